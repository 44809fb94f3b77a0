"""Evaluation reports: the contract, derived numbers, verification, rendering."""

from editproof.report.model import REPORT_FORMAT, SCHEMA_VERSION, EvaluationReport

__all__ = ["REPORT_FORMAT", "SCHEMA_VERSION", "EvaluationReport"]
