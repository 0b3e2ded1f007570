"""Scan output lines and the compliance report (``enforcer report``)."""
