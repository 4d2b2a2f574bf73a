"""Error codes are one enumeration: an unknown code cannot be raised, and a typo in the source fails here."""
from __future__ import annotations

import re

import pytest

from core.errors import STATUS_BY_CODE, ErrorCode, ServiceError, error_body
from proxy.errors import ProxyError
from server.errors import BackendError
from tests.helpers import REPO_ROOT

SOURCE_DIRS = ("core", "proxy", "server")
# ProxyError("code", ...), BackendError(\n "code", ...), error_body("code", ...), and event dicts' "code": "...".
CODE_LITERAL = re.compile(
    r"""(?:\b(?:ProxyError|BackendError|ServiceError|error_body)\(\s*|["']code["']\s*:\s*)["']([^"']*)["']""")


def code_literals() -> list[tuple[str, str]]:
    found = []
    for folder in SOURCE_DIRS:
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            for code in CODE_LITERAL.findall(path.read_text()):
                found.append((str(path.relative_to(REPO_ROOT)), code))
    return found


def test_every_code_literal_in_the_source_is_an_error_code():
    literals = code_literals()
    assert len(literals) > 40, "the scan should see the codes raised across proxy/ and server/"
    assert [(path, code) for path, code in literals if code not in STATUS_BY_CODE] == []


def test_the_scan_sees_a_mistyped_code():
    source = 'raise ProxyError(\n    "model_bsy", "x")\nyield {"status": "error", "code": "pull_stoped"}'
    assert CODE_LITERAL.findall(source) == ["model_bsy", "pull_stoped"]


@pytest.mark.parametrize("error", [ProxyError, BackendError, ServiceError])
def test_unknown_code_cannot_be_raised(error):
    with pytest.raises(ValueError, match="model_bsy"):
        error("model_bsy", "a typo")
    with pytest.raises(ValueError):
        error_body("model_bsy", "a typo")


def test_known_code_carries_its_status_and_compares_as_a_string():
    err = ProxyError("model_busy", "being pulled")
    assert err.code == "model_busy" and err.status == 409
    assert err.to_dict() == {"status": "error", "error": "being pulled", "code": "model_busy"}
    assert BackendError("model_load_failed", "x").status == 422
    assert ProxyError("server_busy", "x", headers={"Retry-After": "1"}).headers == {"Retry-After": "1"}


def test_one_status_table_for_both_processes():
    assert STATUS_BY_CODE["pull_stopped"] == ErrorCode.PULL_STOPPED.status == 503
    assert {code: STATUS_BY_CODE[code] for code in ("invalid_request", "model_not_found", "internal_error",
                                                    "not_found", "method_not_allowed")} == {
        "invalid_request": 400, "model_not_found": 404, "internal_error": 500, "not_found": 404,
        "method_not_allowed": 405}
