"""Pulls: a request checked (request), planned against its source (planning), fetched with failover and locks
(fetch, transfer), verified (verify) and installed (install), as jobs shared by every asker (jobs, service)."""
