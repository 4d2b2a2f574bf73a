"""The OpenAPI fuzz run (schemathesis) against the live stack, counted as a test of the suite."""
from __future__ import annotations

import sys

from tests.helpers import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "scripts"))

from fuzz_api import fuzz_live_stack  # noqa: E402


def test_generated_requests_get_no_500_and_answers_match_the_openapi_document():
    status, output = fuzz_live_stack(max_examples=40)
    assert status == 0, output[-8000:]
    assert "generated" in output
