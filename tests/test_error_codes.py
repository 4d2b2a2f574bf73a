"""Error codes are one enumeration: an unknown code cannot be raised, and a typo in the source fails here."""
from __future__ import annotations

import ast

import pytest

from core.errors import STATUS_BY_CODE, ErrorCode, ServiceError, error_body
from proxy.errors import ProxyError
from server.errors import BackendError
from tests.helpers import REPO_ROOT

SOURCE_DIRS = ("core", "proxy", "server", "scripts")
CODES_HOME = "core/errors.py"  # the one place a code is written as a string
# Calls that take a code, and where: the position of the argument (or `code=`).
CODE_TAKERS = {"ProxyError": 0, "BackendError": 0, "ServiceError": 0, "error_body": 0, "error_code": 0,
               "openai_error_body": 0, "_not_found": 0, "CliError": 1, "Failed": 1}


def code_literals(source: str) -> list[tuple[int, str]]:
    """(line, text) of each string literal in `source` that is an error code, or stands where a code goes: an
    error constructor's code argument, the value of a "code" key."""
    tree = ast.parse(source)
    in_fstrings = {id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in node.values}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in STATUS_BY_CODE \
                and id(node) not in in_fstrings:
            found.append((node.lineno, node.value))
        elif isinstance(node, ast.Call) and _name(node.func) in CODE_TAKERS:
            at = CODE_TAKERS[_name(node.func)]
            given = node.args[at:at + 1] + [k.value for k in node.keywords if k.arg == "code"]
            found += [hit for arg in given for hit in _literal(arg)]
        elif isinstance(node, ast.Dict):
            found += [hit for key, value in zip(node.keys, node.values)
                      if isinstance(key, ast.Constant) and key.value == "code" for hit in _literal(value)]
    return sorted(set(found))


def _name(func: ast.expr) -> str | None:
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None


def _literal(node: ast.expr) -> list[tuple[int, str]]:
    return [(node.lineno, node.value)] if isinstance(node, ast.Constant) and isinstance(node.value, str) else []


def test_no_code_is_written_as_a_string_outside_core_errors():
    paths = [path for folder in SOURCE_DIRS for path in sorted((REPO_ROOT / folder).rglob("*.py"))
             if path.relative_to(REPO_ROOT).as_posix() != CODES_HOME]
    assert len(paths) > 100, "the scan should read every module of core/, proxy/, server/ and scripts/"
    found = [(path.relative_to(REPO_ROOT).as_posix(), line, code)
             for path in paths for line, code in code_literals(path.read_text())]
    assert found == [], "use ErrorCode members: what a code means is declared on it, in core/errors.py"


def test_the_scan_sees_a_code_or_a_mistyped_one_written_as_a_string():
    source = ('raise ProxyError(\n    "model_bsy", "x")\nyield {"status": "error", "code": "pull_stoped"}\n'
              'if err.code in ("file_not_found", ErrorCode.REPO_NOT_FOUND):\n    pass\n'
              'log.info(f"code {code}: model_busy")\nraise ProxyError(ErrorCode.MODEL_BUSY, "model_busy is a code")\n'
              'raise CliError("gone", "proxy_unreachabel")\nFailed("x", code="hub_unavailble")')
    assert code_literals(source) == [(2, "model_bsy"), (3, "pull_stoped"), (4, "file_not_found"),
                                     (8, "proxy_unreachabel"), (9, "hub_unavailble")]


def test_what_a_code_means_is_a_property_of_the_code():
    assert ErrorCode.HUB_UNAVAILABLE.tries_next_source and not ErrorCode.HUB_UNAVAILABLE.source_lacks_it
    assert ErrorCode.FILE_NOT_FOUND.tries_next_source and ErrorCode.FILE_NOT_FOUND.source_lacks_it
    assert not ErrorCode.MODEL_BUSY.tries_next_source and ErrorCode.MODEL_BUSY.queue_is_busy
    assert ErrorCode.GATED_REPO.peer_repo_miss and ErrorCode.NOT_GGUF.peer_file_miss
    assert ErrorCode.BACKEND_TIMEOUT.may_pass_later and not ErrorCode.MODEL_TOO_LARGE.may_pass_later
    assert [code for code in ErrorCode if code.bytes_were_wrong] == [ErrorCode.CHECKSUM_MISMATCH,
                                                                     ErrorCode.INVALID_GGUF]


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
