"""Operating the service: logs and metrics."""
