"""Operating the service: structured logs (`logs.py`) and Prometheus metrics (`metrics.py`)."""
