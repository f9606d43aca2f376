"""The doctor: check-mail and /health/mail probe the server without sending and say what to fix; `--deliverability` judges DNS."""
