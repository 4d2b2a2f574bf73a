"""Error messages say what was tried (repo, revision, endpoint, limit) and what exists (the repo's quants and
files), so the next step is plain (docs/api.md, "Errors from every endpoint")."""
from __future__ import annotations

import json

import pytest

from tests.pull_fixtures import REPO, pull_error

FILES = ("tiny.Q4_K_M.gguf", "tiny.Q8_0.gguf", "tiny-f16-00001-of-00002.gguf", "tiny-f16-00002-of-00002.gguf")
WHAT_EXISTS = ("; it has quants F16, Q4_K_M, Q8_0 and GGUF files tiny-f16-00001-of-00002.gguf, "
               "tiny-f16-00002-of-00002.gguf, tiny.Q4_K_M.gguf, tiny.Q8_0.gguf")


@pytest.fixture
def repo(hub, make_gguf):
    hub.add_repo(REPO, files={**{name: make_gguf(name) for name in FILES}, "README.md": b"# tiny\n"})


def test_a_missing_quant_lists_the_quants_and_files_the_repo_has(client, repo):
    error = pull_error(client, 404, "file_not_found", model=f"{REPO}:Q5_K_M")

    assert error["error"] == f"no GGUF file with quant Q5_K_M in {REPO} at main{WHAT_EXISTS}"


def test_a_missing_file_lists_the_quants_and_files_the_repo_has(client, repo):
    error = pull_error(client, 404, "file_not_found", model=REPO, filename="tiny.Q2_K.gguf")

    assert error["error"] == f"tiny.Q2_K.gguf is not in {REPO} at main{WHAT_EXISTS}"


def test_a_repo_without_gguf_files_says_so(client, hub):
    hub.add_repo(REPO, files={"README.md": b"# nothing\n"})

    assert pull_error(client, 404, "file_not_found", model=REPO)["error"].endswith("; it has no GGUF files")


def test_a_repo_not_found_names_the_repo_revision_and_endpoint(client, hub):
    error = pull_error(client, 404, "repo_not_found", model="acme/typo-GGUF", revision="v2")

    assert f"asked {hub.url} for acme/typo-GGUF at revision v2" in error["error"]


def test_a_revision_not_found_names_the_repo_revision_and_endpoint(client, hub, repo):
    error = pull_error(client, 404, "revision_not_found", model=REPO, revision="no-such-branch")

    assert f"asked {hub.url} for {REPO} at revision no-such-branch" in error["error"]


@pytest.mark.parametrize("path", ["/v1/api/pull", "/v1/generate"])
def test_a_body_over_the_limit_says_the_limit(client, path):
    answer = client.post(path, data=json.dumps({"model": REPO, "pad": "x" * 1048576}), content_type="application/json")

    assert answer.status_code == 413
    assert answer.json == {"status": "error", "code": "body_too_large",
                           "error": "the request body is over the 1 MiB limit (1048576 bytes)"}


def test_a_body_over_the_limit_on_an_openai_path_says_the_limit_in_openai_shape(client):
    answer = client.post("/v1/chat/completions", data=b"x" * 1048577, content_type="application/json")

    assert answer.status_code == 413 and answer.json["error"]["code"] == "body_too_large"
    assert "1 MiB limit" in answer.json["error"]["message"]
