"""Measurement: per-window NLL of a model on token windows, with throughput telemetry."""

from editproof.measure.nll import Telemetry, WindowNLL, measure_nll

__all__ = ["Telemetry", "WindowNLL", "measure_nll"]
