"""Input built to break the parser or to hide what a name says gets a 4xx, never a 500, and changes nothing:
deeply nested JSON, lone surrogates, and Unicode control and format characters (bidi overrides,
zero-width) in file names, whether a client sends them or the Hub lists them."""
from __future__ import annotations

import json

import pytest

from tests.pull_fixtures import REPO, KiB, pull, pull_error, snapshot_tree, top_level_ggufs

FILE = "tiny.Q4_K_M.gguf"
NESTED = b"[" * 100_000 + b"]" * 100_000  # 200 KB, well under the 1 MiB body limit
# Each is invisible or changes how the text around it is shown; a person reading a listing is misled.
HIDDEN_CHARACTERS = {
    "rlo": "\u202e",  # RIGHT-TO-LEFT OVERRIDE: "x\u202efuggg.gguf" shows as "xggguf.gguf"
    "zwsp": "\u200b",  # ZERO WIDTH SPACE
    "zwj": "\u200d",  # ZERO WIDTH JOINER
    "lri": "\u2066",  # LEFT-TO-RIGHT ISOLATE
    "bom": "\ufeff",  # ZERO WIDTH NO-BREAK SPACE
    "shy": "\u00ad",  # SOFT HYPHEN
    "c1": "\u0085",  # NEXT LINE, a C1 control
    "line-separator": "\u2028",
}


@pytest.fixture
def repo(hub, make_gguf):
    source = make_gguf(FILE, 64 * KiB)
    hub.add_repo(REPO, files={FILE: source})
    return source


def raw_request(client, method: str, path: str, body: bytes):
    return client.open(path, method=method, data=body, content_type="application/json")


@pytest.mark.parametrize("method, path", [("POST", "/v1/api/pull"), ("DELETE", "/v1/api/delete")])
@pytest.mark.parametrize("body", [NESTED, b'{"model": ' + NESTED + b"}"], ids=["nested-array", "nested-field"])
def test_deeply_nested_json_is_invalid_request(client, hub, method, path, body):
    response = raw_request(client, method, path, body)

    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    assert response.get_json()["code"] == "invalid_request"
    assert hub.requests() == []


@pytest.mark.parametrize("method, path, body", [
    ("POST", "/v1/api/pull", {"model": REPO, "filename": "tiny\\ud800.Q4_K_M.gguf"}),
    ("POST", "/v1/api/pull", {"model": REPO, "filename": "sub\\udfff/tiny.Q4_K_M.gguf"}),
    ("DELETE", "/v1/api/delete", {"filename": "tiny\\ud800.Q4_K_M.gguf"}),
    ("DELETE", "/v1/api/delete", {"model": "tiny\\ud800"}),
], ids=["pull", "pull-folder", "delete-filename", "delete-model"])
def test_lone_surrogate_in_a_name_is_unsafe_filename(client, hub, repo, tmp_path, method, path, body):
    before = snapshot_tree(tmp_path)
    # json.dumps would escape the backslash; the \\ud800 escape is what a hostile client sends.
    raw = json.dumps(body).replace("\\\\u", "\\u").encode()

    response = raw_request(client, method, path, raw)

    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    assert response.get_json()["code"] == "unsafe_filename"
    assert snapshot_tree(tmp_path) == before


@pytest.mark.parametrize("char", HIDDEN_CHARACTERS.values(), ids=HIDDEN_CHARACTERS.keys())
def test_control_and_format_characters_in_a_filename_are_unsafe_filename(client, hub, repo, models_dir, char):
    pull_error(client, 400, "unsafe_filename", model=REPO, filename=f"tiny{char}.Q4_K_M.gguf")
    pull_error(client, 400, "unsafe_filename", model=REPO, filename=f"sub{char}/tiny.Q4_K_M.gguf")
    assert hub.requests() == [], "refused before asking the Hub"

    assert pull(client, model=REPO)[-1]["status"] == "complete"
    for body in ({"filename": f"tiny{char}.Q4_K_M.gguf"}, {"model": f"tiny{char}.Q4_K_M"}):
        response = client.delete("/v1/api/delete", json=body)
        assert response.status_code == 400 and response.get_json()["code"] == "unsafe_filename", body
    assert top_level_ggufs(models_dir) == [FILE]


@pytest.mark.parametrize("char", ["\u202e", "\u200b"], ids=["rlo", "zwsp"])
def test_a_hub_file_named_with_format_characters_is_never_installed(client, hub, make_gguf, models_dir, char):
    hub.add_repo(REPO, files={f"evil{char}.Q4_K_M.gguf": make_gguf("evil.gguf")})

    pull_error(client, 400, "unsafe_filename", model=REPO, quant="Q4_K_M")

    assert top_level_ggufs(models_dir) == []
    ids = [entry["id"] for entry in client.get("/v1/models").get_json()["data"]]
    assert not any(char in model_id for model_id in ids), ids
