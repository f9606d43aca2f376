"""Rate limits: the provider's sending limits shared by every process, the pace per server, API limits.

- `settings.py`: MAIL_RATE_LIMIT, MAIL_RECIPIENT_RATE_LIMIT, API_RATE_LIMIT and the limits in force.
- `storage.py`: where they are counted (Redis or the store's database, `sql.py`).
- `sending.py` (the shared limits), `pacing.py` (this process's pace), `gate.py` (what a dispatcher asks).
- `api.py`: the limit per API key; `api/rate_limit.py` answers 429 with it.
"""
