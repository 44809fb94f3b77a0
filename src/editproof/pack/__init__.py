"""Proof packs: build, sign, verify and browse the evidence of a suite run."""
