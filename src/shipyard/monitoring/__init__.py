"""Monitoring: drift of served data against a model's reference, performance, alerts, reports."""

from shipyard.monitoring.drift import DataDescription, DriftReport, SkippedColumn, compute_drift

__all__ = ["DataDescription", "DriftReport", "SkippedColumn", "compute_drift"]
