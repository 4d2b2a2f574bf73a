"""core.naming: one safe-name rule and one model-id resolution, the same in the proxy and the backend."""
from __future__ import annotations

from pathlib import Path

import pytest

from core.naming import AmbiguousModelName, is_safe_name, is_safe_path, model_id, resolve_model_id
from proxy.models_dir.store import ModelStore
from server.residency.discovery import resolve_model, scan_models
from server.errors import ModelNotFound

INSTALLED = ["phi-3-mini-4k-instruct.Q4_K_M.gguf", "gemma-3-270m-q4_k_m.gguf", "tiny-Q4_K_M.gguf",
             "tiny-Q8_0.gguf", "Case-Model.Q8_0.gguf", "split-IQ4_XS-00001-of-00002.gguf",
             "split-IQ4_XS-00002-of-00002.gguf"]
NAMES = ["phi-3-mini-4k-instruct.Q4_K_M", "phi-3-mini-4k-instruct.Q4_K_M.gguf", "phi-3-mini-4k-instruct",
         "gemma-3-270m", "GEMMA-3-270M", "gemma-3-270m-Q4_K_M", "tiny", "tiny-Q8_0", "tiny-q8_0", "Case-Model",
         "case-model", "case-model.Q8_0", "split", "split-IQ4_XS", "split-IQ4_XS-00002-of-00002.gguf", "phi-3",
         " tiny-Q8_0 ", "nothing"]


@pytest.mark.parametrize("name", ["model.Q4_K_M.gguf", "a~b.gguf", "résumé-Q8_0.gguf", "x" * 200])
def test_safe_names(name):
    assert is_safe_name(name)


@pytest.mark.parametrize("name", ["", ".", "..", ".staging", ".hidden.gguf", "~x.gguf", "..%2fx.gguf", "a%20b.gguf",
                                  "a/b.gguf", "a\\b.gguf", "a\x00.gguf", "a\nb.gguf", "evil\u202e.gguf",
                                  "zero\u200bwidth.gguf", "lone\ud800.gguf"])
def test_unsafe_names(name):
    assert not is_safe_name(name)


def test_a_repo_path_is_safe_when_every_part_is():
    assert is_safe_path("sub/dir/model.gguf")
    assert not any(is_safe_path(p) for p in ("/abs/x.gguf", "sub//x.gguf", "../x.gguf", "sub/.git/x.gguf",
                                             "~/x.gguf", ""))


def test_resolution_takes_the_id_or_a_unique_quantless_stem():
    ids = ["tiny-Q4_K_M", "tiny-Q8_0", "gemma-3-270m-q4_k_m", "gemma-3-270m"]
    assert resolve_model_id(ids, "gemma-3-270m") == "gemma-3-270m"  # the id itself wins over a stem
    assert resolve_model_id(ids, "gemma-3-270m-q4_k_m.gguf") == "gemma-3-270m-q4_k_m"
    assert resolve_model_id(ids, "TINY-Q8_0") is None  # ids are case-sensitive, as file names are
    with pytest.raises(AmbiguousModelName) as info:
        resolve_model_id(ids, "tiny")
    assert info.value.ids == ["tiny-Q4_K_M", "tiny-Q8_0"]


def backend_answer(models_dir: Path, name: str) -> str | None:
    try:
        model = resolve_model(scan_models(str(models_dir)), name)
    except ModelNotFound:
        return None
    return model.id if model else None


def proxy_answer(models_dir: Path, name: str) -> str | None:
    ids = {model_id(f) for f in ModelStore(models_dir).files_of_model(name)}
    assert len(ids) <= 1, ids
    return ids.pop() if ids else None


def test_proxy_and_backend_resolve_every_name_alike(tmp_path):
    for filename in INSTALLED:
        (tmp_path / filename).write_bytes(b"x" * 16)

    answers = {name: (proxy_answer(tmp_path, name), backend_answer(tmp_path, name)) for name in NAMES}

    assert {name: p for name, (p, b) in answers.items() if p != b} == {}
    assert answers["phi-3-mini-4k-instruct"][0] == "phi-3-mini-4k-instruct.Q4_K_M"
    assert answers["gemma-3-270m"][0] == "gemma-3-270m-q4_k_m"
    assert answers["split"][0] == "split-IQ4_XS"
    assert answers["tiny"][0] is None and answers["case-model"][0] is None


def test_files_the_proxy_refuses_are_not_served_by_the_backend(tmp_path):
    for filename in ("ok-Q8_0.gguf", "a%20b-Q8_0.gguf", "~tilde-Q8_0.gguf", "evil\u202e-Q8_0.gguf"):
        (tmp_path / filename).write_bytes(b"x" * 16)

    assert list(scan_models(str(tmp_path))) == ["ok-Q8_0"]
    assert ModelStore(tmp_path).installed_files() == ["ok-Q8_0.gguf"]
