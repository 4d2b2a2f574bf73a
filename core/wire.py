"""What the proxy and the backend say to each other beyond a request's body: the headers both read and write."""
from __future__ import annotations

# How long the proxy waits for this request (BACKEND_TIMEOUT_S): the backend stops the work once it passes.
TIMEOUT_HEADER = "X-Request-Timeout-S"
# A pull's `verify: "load"` generation: the backend unloads a model it loaded only for it.
SMOKE_TEST_HEADER = "X-Smoke-Test"
