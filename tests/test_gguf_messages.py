"""GGUF scan errors reach clients as fixed descriptions: no key or tensor name read from the file is echoed."""
from __future__ import annotations

from pathlib import Path

import pytest

from core.gguf_check import InvalidGGUF, scan_gguf_header
from server.residency.discovery import scan_models
from server.errors import ModelLoadFailed
from server.residency.loading import check_header
from scripts.gguf_files import TensorSpec, overwrite_bytes, write_gguf

MARK = "EVIL\u202e<b>"  # bidi override and markup, as a hostile file could carry them
FILE = "tiny.Q4_K_M.gguf"
REPO = "acme/tiny-GGUF"


def replace_bytes(path: Path, old: str, new: str) -> Path:
    overwrite_bytes(path, path.read_bytes().index(old.encode()), new.encode())
    return path


def duplicate_key_gguf(path: Path) -> Path:
    """A GGUF whose metadata has one key twice; the key is MARK, longer than a message shows."""
    key = MARK + "k" * 200
    write_gguf(path, metadata={key + "1": 1, key + "2": 2})
    return replace_bytes(path, key + "2", key + "1")


def duplicate_tensor_gguf(path: Path) -> Path:
    write_gguf(path, tensors=[TensorSpec(MARK + "a", (32,)), TensorSpec(MARK + "b", (32,))])
    return replace_bytes(path, MARK + "b", MARK + "a")


@pytest.mark.parametrize("make", [duplicate_key_gguf, duplicate_tensor_gguf], ids=["key", "tensor"])
def test_scan_detail_escapes_names_and_the_client_message_quotes_none(tmp_path, make):
    with pytest.raises(InvalidGGUF) as info:
        scan_gguf_header(make(tmp_path / FILE))

    detail, client = str(info.value), info.value.client_message
    assert "duplicate" in detail and "EVIL\\u202e<b>" in detail  # escaped, for the log
    assert "\u202e" not in detail and len(detail) < 200
    assert "EVIL" not in client and "<b>" not in client


def test_a_pull_of_such_a_file_answers_invalid_gguf_without_its_names(client, hub, tmp_path):
    hub.add_repo(REPO, files={FILE: duplicate_key_gguf(tmp_path / FILE).read_bytes()})

    response = client.post("/v1/api/pull", json={"model": REPO, "stream": False})

    assert response.status_code == 422 and response.get_json()["code"] == "invalid_gguf"
    assert "EVIL" not in response.get_data(as_text=True)


def test_the_backend_names_the_file_but_not_what_is_inside(tmp_path):
    duplicate_tensor_gguf(tmp_path / FILE)
    model = scan_models(str(tmp_path))["tiny.Q4_K_M"]

    with pytest.raises(ModelLoadFailed) as info:
        check_header(model)

    assert FILE in info.value.message and "EVIL" not in info.value.message
