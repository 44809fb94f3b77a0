"""Scenario catalogue and suite verdict: pure, torch-free, shared by the suite and packs."""
