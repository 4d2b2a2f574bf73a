"""The red team's requests that need no model: each bound is a 400 naming the part, in milliseconds (issue 28;
docs/api.md, Limits). tests/test_hardening_engine.py sends the same through the real stack."""
from __future__ import annotations

import json
import time

import pytest

from core.json_tree import MAX_JSON_DEPTH, json_tree_problem
from core.units import KEEP_ALIVE_FOREVER_S, parse_keep_alive
from server.api.params import MAX_MESSAGES, parse_chat, parse_completion, parse_json_body
from server.engine.grammar_limits import MAX_ENUM, MAX_REPEAT, check_grammar, grammar_depth
from server.engine.sampling import grammar_for
from server.errors import InvalidRequest
from server.settings import Settings


def _schema(schema: dict) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}


@pytest.mark.parametrize("schema, part", [
    ({"type": "string", "maxLength": 20000}, "schema.maxLength"),
    ({"type": "array", "maxItems": 30000}, "schema.maxItems"),
    ({"type": "array", "items": {"type": "integer"}, "minItems": 4000000}, "schema.minItems"),
    ({"type": "object", "properties": {"tag": {"enum": [f"v{i}" for i in range(20000)]}}},
     "schema.properties.tag.enum"),
    ({"type": "string", "pattern": "^a{0,20000}$"}, "schema.pattern"),
])
def test_schema_past_a_bound_is_refused_in_milliseconds_naming_the_part(schema, part):
    started = time.monotonic()
    with pytest.raises(InvalidRequest) as caught:
        grammar_for(_schema(schema))
    assert time.monotonic() - started < 1.0
    assert f"response_format.json_schema.{part}" in caught.value.message and caught.value.param == "response_format"


def test_schema_at_the_bounds_still_converts():
    grammar = grammar_for(_schema({"type": "object", "properties": {
        "name": {"type": "string", "maxLength": MAX_REPEAT},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": MAX_REPEAT},
        "kind": {"enum": [f"k{i}" for i in range(MAX_ENUM)]}}}))
    check_grammar(grammar, "response_format")


def test_grammar_nesting_is_measured_outside_literals_and_refused_past_the_bound():
    assert grammar_depth('root ::= "(((" [(] ("a" ("b")?)?') == 2
    deep = "root ::= " + "(" * 5000 + '"a"' + ")" * 5000
    with pytest.raises(InvalidRequest, match="nested 5000 groups deep"):
        check_grammar(deep, "tools")


@pytest.mark.parametrize("raw, where", [
    (b'{"model": "m", "prompt": "\\ud800"}', "`prompt`"),
    (b'{"model": "m", "messages": [{"role": "user", "content": "a\\udfffb"}]}', "`messages[0].content`"),
    (b'{"model": "m", "input": ["ok", "\\ud83d"]}', "`input[1]`"),
])
def test_lone_surrogate_is_a_400_naming_where(raw, where):
    with pytest.raises(InvalidRequest, match="lone UTF-16 surrogate") as caught:
        parse_json_body(raw)
    assert where in caught.value.message


def test_surrogate_pair_is_a_character_not_an_error():
    assert parse_json_body(b'{"prompt": "\\ud83d\\ude00"}')["prompt"] == "\U0001F600"


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 900, 3000, 100_000])
def test_deeply_nested_body_is_a_400_not_a_recursion_error(depth):
    schema = "[" * depth + "]" * depth
    raw = f'{{"model": "m", "response_format": {{"type": "json_schema", "json_schema": {{"schema": {schema}}}}}}}'
    with pytest.raises(InvalidRequest, match="nested"):
        parse_json_body(raw.encode())
    objects = '{"a":' * depth + "1" + "}" * depth
    with pytest.raises(InvalidRequest, match="nested"):
        parse_json_body(f'{{"format": {objects}}}'.encode())


def test_json_tree_accepts_what_a_request_nests():
    assert json_tree_problem({"tools": [{"function": {"parameters": {"properties": {"a": {"items": {}}}}}}]}) is None


@pytest.mark.parametrize("value", ["99999999h", 1e308, "1e308", 10 * 365 * 86400 + 1])
def test_keep_alive_past_ten_years_means_forever(value):
    assert parse_keep_alive(value) is None


def test_keep_alive_within_ten_years_is_kept():
    assert parse_keep_alive(KEEP_ALIVE_FOREVER_S) == KEEP_ALIVE_FOREVER_S and parse_keep_alive("5m") == 300


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_max_tokens_zero_is_refused_as_openai_refuses_it(field):
    with pytest.raises(InvalidRequest, match=f"`{field}` must be at least 1"):
        parse_chat({"model": "m", "messages": [{"role": "user", "content": "hi"}], field: 0})
    with pytest.raises(InvalidRequest, match="at least 1"):
        parse_completion({"model": "m", "prompt": "hi", "max_tokens": 0})


def test_a_huge_message_list_is_refused_before_anything_renders_it():
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": ""}] * 30000}).encode()
    started = time.monotonic()
    with pytest.raises(InvalidRequest, match=f"30000 messages; at most {MAX_MESSAGES}"):
        parse_chat(parse_json_body(body))
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize("value", ["0", "0GiB", "0B"])
def test_max_model_memory_zero_stops_the_start_with_a_message(value):
    with pytest.raises(ValueError, match="MAX_MODEL_MEMORY=.* leaves no memory"):
        Settings(max_model_memory=value)


def test_backend_listens_on_the_loopback_by_default():
    assert Settings.from_env({"HOST": "0.0.0.0"}).host == "127.0.0.1"
    assert Settings.from_env({"BACKEND_HOST": "0.0.0.0"}).host == "0.0.0.0"


@pytest.mark.parametrize("path", ["docker/start.sh", "docker/Dockerfile", "docker/Dockerfile.cuda"])
def test_the_container_keeps_the_backend_on_the_loopback(path):
    from tests.helpers import REPO_ROOT

    text = (REPO_ROOT / path).read_text()
    assert "BACKEND_HOST=127.0.0.1" in text or 'BACKEND_HOST="${BACKEND_HOST:-127.0.0.1}"' in text
