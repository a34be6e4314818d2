"""Monitoring: anomaly detection on the daily metrics mart (see anomalies.py)."""
