"""Metrics: pass@k estimators, logging, plots and reports."""
