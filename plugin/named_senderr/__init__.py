"""named-senderr: BIND "error sending response" log lines as structured events."""

__version__ = "0.1.0"
