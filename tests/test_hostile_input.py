"""Input built to break the parser gets a 4xx, never a 500: deeply nested JSON."""
from __future__ import annotations

import pytest

NESTED = b"[" * 100_000 + b"]" * 100_000  # 200 KB, well under the 1 MiB body limit


def raw_request(client, method: str, path: str, body: bytes):
    return client.open(path, method=method, data=body, content_type="application/json")


@pytest.mark.parametrize("method, path", [("POST", "/v1/api/pull"), ("DELETE", "/v1/api/delete")])
@pytest.mark.parametrize("body", [NESTED, b'{"model": ' + NESTED + b"}"], ids=["nested-array", "nested-field"])
def test_deeply_nested_json_is_invalid_request(client, hub, method, path, body):
    response = raw_request(client, method, path, body)

    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    assert response.get_json()["code"] == "invalid_request"
    assert hub.requests() == []
