"""Proof packs: a curated, checksummed, signed copy of a finished suite run, and the verifier
that checks one offline. Torch-free: verifying needs only the core install."""
