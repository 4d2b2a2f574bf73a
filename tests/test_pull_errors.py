"""Every error code of docs/api.md, reached by the input or the fault that causes it, leaving MODELS_DIR clean.

Errors found before streaming come as an HTTP status with the JSON error; errors after the stream
began come as its last line (and, with `stream: false`, as the final object with the code's status).
"""
from __future__ import annotations

import json

import pytest

from scripts.gguf_files import html_page_bytes, lfs_pointer_bytes, truncate_file, write_gguf
from tests.fakes.hub import Fault
from tests.helpers import free_port
from tests.pull_fixtures import (
    REPO, TOKEN, KiB, bearer, content_gets, declare_huge_file, open_stream, pull, pull_error, slow_backend,
    snapshot_tree, staging_files, top_level_ggufs,
)

FILE = "tiny.Q4_K_M.gguf"


@pytest.fixture
def repo(hub, make_gguf):
    """REPO with one small GGUF and a README; returns the GGUF's source file."""
    source = make_gguf(FILE, 128 * KiB)
    hub.add_repo(REPO, files={FILE: source, "README.md": b"# tiny\n"})
    return source


def assert_nothing_installed(models_dir):
    assert top_level_ggufs(models_dir) == []


# --- the request body ---------------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    b"not json",
    b'["acme/tiny-GGUF"]',
    b'{"stream": true}',
    b'{"model": null}',
    b'{"model": 123}',
    b'{"model": "acme/tiny-GGUF", "stream": "yes"}',
    b'{"model": "acme/tiny-GGUF", "async": 1}',
    b'{"model": "acme/tiny-GGUF", "filename": ["x.gguf"]}',
    b'{"model": "acme/tiny-GGUF", "verify": "twice"}',
    b'{"model": "acme/tiny-GGUF", "revision": "../main"}',
], ids=["not-json", "array", "model-missing", "model-null", "model-number", "stream-string", "async-number",
        "filename-list", "verify-unknown", "revision-dotdot"])
def test_malformed_body_is_invalid_request(client, hub, repo, models_dir, body):
    response = client.post("/v1/api/pull", data=body, content_type="application/json")

    assert response.status_code == 400
    assert response.get_json()["code"] == "invalid_request"
    assert hub.requests() == [], "nothing asked of the Hub"
    assert_nothing_installed(models_dir)


def test_body_over_one_mib_is_body_too_large(client, hub, repo, models_dir):
    body = json.dumps({"model": REPO, "padding": "x" * (1024 * 1024)})

    response = client.post("/v1/api/pull", data=body, content_type="application/json")

    assert response.status_code == 413
    assert response.get_json()["code"] == "body_too_large"
    assert hub.requests() == []
    assert_nothing_installed(models_dir)


@pytest.mark.parametrize("model", ["", "noslash", "a/b/c", "../etc", "owner/..", "own er/x", "owner/x?y",
                                   "-owner/x", "owner/x\x00", "owner//x"])
def test_bad_repo_id_is_invalid_repo_id(client, hub, model, models_dir):
    pull_error(client, 400, "invalid_repo_id", model=model)
    assert hub.requests() == []


@pytest.mark.parametrize("filename", ["README.md", "tiny.Q4_K_M.bin", "tiny.gguf.part"])
def test_file_that_is_not_gguf_is_not_gguf(client, hub, repo, models_dir, filename):
    pull_error(client, 400, "not_gguf", model=REPO, filename=filename)
    assert content_gets(hub, REPO, FILE) == []
    assert_nothing_installed(models_dir)


@pytest.mark.parametrize("filename", ["../x.gguf", "/etc/passwd", "a\x00.gguf", "..%2fx.gguf", "..%2Fx.gguf",
                                      "..\\x.gguf", ".hidden.gguf", "sub/../../x.gguf", "sub/./x.gguf",
                                      "~/x.gguf", "a\nb.gguf", "sub//x.gguf", "/abs/x.gguf"])
def test_hostile_filename_is_refused_and_nothing_written_outside(client, hub, repo, models_dir, tmp_path,
                                                                 filename):
    before = snapshot_tree(tmp_path)

    pull_error(client, 400, "unsafe_filename", model=REPO, filename=filename)

    assert snapshot_tree(tmp_path) == before
    assert hub.requests() == [], "refused before asking the Hub"


def long_name(length: int) -> str:
    """A GGUF file name of exactly `length` bytes."""
    suffix = ".Q4_K_M.gguf"
    return "m" * (length - len(suffix)) + suffix


# 242: one byte over what fits once the longest suffix (a resume note's .<repo tag>.json) is appended.
@pytest.mark.parametrize("length", [242, 247, 255])
def test_name_too_long_once_staged_is_unsafe_filename_before_anything_happens(client, hub, make_gguf, models_dir,
                                                                              length):
    name = long_name(length)
    hub.add_repo(REPO, files={name: make_gguf("long.gguf")})

    error = pull_error(client, 400, "unsafe_filename", model=REPO, filename=name)

    assert "too long" in error["error"]
    assert hub.requests() == [], "refused before asking the Hub"
    assert staging_files(models_dir) == []


def test_listed_name_too_long_once_staged_is_unsafe_filename(client, hub, make_gguf, models_dir):
    hub.add_repo(REPO, files={long_name(250): make_gguf("long.gguf")})

    pull_error(client, 400, "unsafe_filename", model=REPO)

    assert hub.requests_to("/cdn-lfs") == []
    assert staging_files(models_dir) == []


def test_name_of_the_longest_length_that_fits_once_staged_is_pulled(client, hub, make_gguf, models_dir):
    from proxy.models_dir.staging import MAX_FILENAME_BYTES

    name = long_name(MAX_FILENAME_BYTES)
    hub.add_repo(REPO, files={name: make_gguf("long.gguf")})

    assert pull(client, model=REPO, filename=name)[-1]["status"] == "complete"
    assert top_level_ggufs(models_dir) == [name] and staging_files(models_dir) == []


@pytest.mark.parametrize("name", ["../x.gguf", "..", ".staging", ".proxy/models.json", "/etc/passwd",
                                  "a\x00.gguf"])
def test_hostile_name_to_delete_touches_nothing(client, repo, models_dir, tmp_path, name):
    assert pull(client, model=REPO)[-1]["status"] == "complete"
    before = snapshot_tree(tmp_path)

    response = client.delete("/v1/api/delete", json={"filename": name})

    assert response.status_code in (400, 404)
    assert response.get_json()["code"] in ("unsafe_filename", "model_not_found")
    assert snapshot_tree(tmp_path) == before


# --- who may pull -------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, bearer("wrong"), {"Authorization": "Basic s3cret"},
                                     {"Authorization": "s3cret"}, bearer("")],
                         ids=["none", "wrong", "basic", "no-scheme", "empty"])
def test_pull_and_delete_need_the_api_key(make_app, hub, repo, models_dir, headers):
    client = make_app(api_key="s3cret").test_client()

    pull_error(client, 401, "auth_required", headers=headers, model=REPO)
    assert hub.requests() == []
    assert pull(client, headers=bearer("s3cret"), model=REPO)[-1]["status"] == "complete"
    response = client.delete("/v1/api/delete", json={"filename": FILE}, headers=headers)
    assert response.status_code == 401 and response.get_json()["code"] == "auth_required"
    assert top_level_ggufs(models_dir) == [FILE]

    response = client.delete("/v1/api/delete", json={"filename": FILE}, headers=bearer("s3cret"))
    assert response.status_code == 200 and response.get_json()["files"] == [FILE]


def test_repo_outside_allowed_repos_is_refused(make_app, hub, repo, make_gguf, models_dir):
    hub.add_repo("other/model-GGUF", files={FILE: make_gguf("other.gguf")})
    client = make_app(allowed_repos=("ACME/*", "bartowski/*")).test_client()

    pull_error(client, 403, "repo_not_allowed", model="other/model-GGUF")
    pull_error(client, 403, "repo_not_allowed", model="acmeX/tiny-GGUF")

    assert hub.requests_to("/api/models/other") == []
    assert pull(client, model=REPO)[-1]["status"] == "complete", "case-insensitive match of acme/*"


# --- what the Hub says before any byte moves ------------------------------------------------------


def test_missing_repo_is_repo_not_found(client, hub, models_dir):
    pull_error(client, 404, "repo_not_found", model="acme/nothing-here")
    assert_nothing_installed(models_dir)


def test_private_repo_without_token_is_repo_not_found_and_with_token_works(make_app, hub, make_gguf, models_dir):
    hub.add_repo(REPO, files={FILE: make_gguf(FILE)}, private=True, readers={TOKEN})

    hub.tokens.add("hf_known_but_no_access")

    pull_error(make_app().test_client(), 404, "repo_not_found", model=REPO)
    pull_error(make_app(hf_token="hf_known_but_no_access").test_client(), 404, "repo_not_found", model=REPO)
    assert_nothing_installed(models_dir)

    events = pull(make_app(hf_token=TOKEN).test_client(), model=REPO)
    assert events[-1]["status"] == "complete"
    assert top_level_ggufs(models_dir) == [FILE]


def test_gated_repo_without_approval_is_gated_repo_before_streaming(make_app, hub, make_gguf, models_dir):
    hub.tokens.add("hf_not_approved")
    hub.add_repo(REPO, files={FILE: make_gguf(FILE)}, gated="manual", approved={TOKEN})

    pull_error(make_app().test_client(), 403, "gated_repo", model=REPO)
    pull_error(make_app(hf_token="hf_not_approved").test_client(), 403, "gated_repo", model=REPO)
    assert content_gets(hub, REPO, FILE) == []
    assert_nothing_installed(models_dir)

    events = pull(make_app(hf_token=TOKEN).test_client(), model=REPO)
    assert events[-1]["status"] == "complete"


def test_unknown_hf_token_is_hub_token_rejected(make_app, hub, repo, models_dir):
    client = make_app(hf_token="hf_nobody_knows_this").test_client()

    error = pull_error(client, 502, "hub_token_rejected", model=REPO)

    assert "hf_nobody_knows_this" not in json.dumps(error)
    assert_nothing_installed(models_dir)


@pytest.mark.parametrize("body", [{"filename": "absent.Q4_K_M.gguf"}, {"quant": "Q8_0"}, {"filename": "sub/x.gguf"}],
                         ids=["missing-file", "no-such-quant", "missing-folder"])
def test_missing_file_is_file_not_found(client, hub, repo, models_dir, body):
    pull_error(client, 404, "file_not_found", model=REPO, **body)
    assert_nothing_installed(models_dir)


def test_repo_without_gguf_is_file_not_found(client, hub, models_dir):
    hub.add_repo(REPO, files={"README.md": b"# nothing\n", "model.safetensors": b"\0" * 64})
    pull_error(client, 404, "file_not_found", model=REPO)


def test_unknown_revision_is_revision_not_found(client, hub, repo, models_dir):
    pull_error(client, 404, "revision_not_found", model=REPO, revision="no-such-branch")
    pull_error(client, 404, "revision_not_found", model=REPO, revision="0" * 40)
    assert_nothing_installed(models_dir)


def test_declared_size_over_free_space_is_insufficient_storage(client, hub, repo, models_dir):
    declare_huge_file(hub, REPO, "huge.Q8_0.gguf", 1 << 60)

    pull_error(client, 507, "insufficient_storage", model=REPO, filename="huge.Q8_0.gguf")

    assert hub.requests_to("/cdn-lfs", method="GET") == []
    assert_nothing_installed(models_dir)
    assert staging_files(models_dir) == []


def test_hub_reporting_a_negative_size_is_hub_unavailable_before_streaming(client, hub, repo, models_dir):
    hub.misreport_size(REPO, FILE, -5)

    error = pull_error(client, 502, "hub_unavailable", model=REPO)

    assert "size" in error["error"]
    assert hub.requests_to("/cdn-lfs") == []
    assert staging_files(models_dir) == []


def test_unreachable_hub_is_hub_unavailable(make_app, models_dir):
    client = make_app(hf_endpoint=f"http://127.0.0.1:{free_port()}", pull_max_retries=2).test_client()
    pull_error(client, 502, "hub_unavailable", model=REPO)
    assert_nothing_installed(models_dir)


def test_hub_api_failing_with_5xx_is_hub_unavailable_after_retries(make_app, hub, repo, models_dir):
    client = make_app(pull_max_retries=3).test_client()
    hub.faults.add(Fault.status(503, times=None), on="api")

    pull_error(client, 502, "hub_unavailable", model=REPO)

    assert len(hub.requests_to("/api/models/")) == 3
    assert_nothing_installed(models_dir)


def test_hub_api_5xx_then_ok_is_retried(make_app, hub, repo, models_dir):
    client = make_app(pull_max_retries=3).test_client()
    hub.faults.add(Fault.status(502, times=2), on="api")

    assert pull(client, model=REPO)[-1]["status"] == "complete"


# --- checks after the download ------------------------------------------------------------------


def test_wrong_bytes_are_checksum_mismatch_and_the_staging_file_is_removed(make_app, hub, make_gguf, models_dir):
    hub.add_repo(REPO, files={FILE: make_gguf(FILE, 1024 * KiB)})
    client = make_app(pull_connections=4, pull_chunk_bytes=256 * KiB).test_client()
    hub.faults.add(Fault.wrong_bytes(times=None, from_offset=300 * KiB), file=FILE)

    response = client.post("/v1/api/pull", json={"model": REPO, "stream": False})

    assert response.status_code == 502
    assert response.get_json()["code"] == "checksum_mismatch"
    assert_nothing_installed(models_dir)
    assert staging_files(models_dir) == []


@pytest.mark.parametrize("lie", [4 * KiB, -4 * KiB], ids=["more", "less"])
def test_size_lie_is_checksum_mismatch_and_the_staging_file_is_removed(client, hub, repo, models_dir, lie):
    hub.misreport_size(REPO, FILE, 128 * KiB + lie)

    events = pull(client, model=REPO)

    assert events[-1]["status"] == "error" and events[-1]["code"] == "checksum_mismatch", events[-1]
    assert_nothing_installed(models_dir)
    assert staging_files(models_dir) == []


def truncated_gguf(path):
    write_gguf(path, tensor_bytes=64 * KiB, random_seed=3)
    truncate_file(path, -100)
    return path.read_bytes()


@pytest.mark.parametrize("content", ["html", "lfs-pointer", "truncated", "empty"])
def test_file_that_is_not_a_whole_gguf_is_invalid_gguf(client, hub, models_dir, tmp_path, content):
    data = {
        "html": html_page_bytes,
        "lfs-pointer": lambda: lfs_pointer_bytes("a" * 64, 123456789),
        "truncated": lambda: truncated_gguf(tmp_path / "cut.gguf"),
        "empty": lambda: b"",
    }[content]()
    hub.add_repo(REPO, files={FILE: data})

    response = client.post("/v1/api/pull", json={"model": REPO, "stream": False})

    assert response.status_code == 422, response.get_json()
    assert response.get_json()["code"] == "invalid_gguf"
    assert_nothing_installed(models_dir)
    assert staging_files(models_dir) == []


def test_invalid_gguf_in_a_stream_ends_with_an_error_line(client, hub, models_dir):
    hub.add_repo(REPO, files={FILE: html_page_bytes()})

    events = pull(client, model=REPO)

    assert events[0]["status"] == "starting"
    assert events[-1]["status"] == "error" and events[-1]["code"] == "invalid_gguf"
    assert_nothing_installed(models_dir)


# --- pulls that meet other pulls ------------------------------------------------------------------


def stall_downloads_of(hub, filename: str):
    """Every request for `filename`'s bytes sends a little, then nothing, until the hub stops."""
    return hub.faults.add(Fault.stall(after_bytes=1 * KiB, times=None), file=filename)


def test_full_queue_is_pull_queue_full(make_app, hub, make_gguf, models_dir):
    names = ["a.Q4_K_M.gguf", "b.Q4_K_M.gguf", "c.Q4_K_M.gguf"]
    for name in names:
        hub.add_repo(f"acme/{name[0]}-GGUF", files={name: make_gguf(name)})
    stall_downloads_of(hub, names[0])
    client = make_app(pull_concurrency=1, pull_queue_max=1, pull_stall_timeout_s=30).test_client()

    running = client.post("/v1/api/pull", json={"model": "acme/a-GGUF", "async": True})
    queued = client.post("/v1/api/pull", json={"model": "acme/b-GGUF", "async": True})
    assert running.status_code == 202 and queued.status_code == 202
    assert queued.get_json()["status"] == "queued"

    pull_error(client, 409, "pull_queue_full", model="acme/c-GGUF")
    assert content_gets(hub, "acme/c-GGUF", names[2]) == []


def test_same_filename_from_another_repo_while_downloading_is_model_busy(make_app, hub, make_gguf, models_dir):
    hub.add_repo(REPO, files={FILE: make_gguf(FILE)})
    hub.add_repo("fork/tiny-GGUF", files={FILE: make_gguf("fork-" + FILE)})
    stall_downloads_of(hub, FILE)
    client = make_app(pull_stall_timeout_s=30).test_client()
    stream = open_stream(client, model=REPO)
    stream.until(lambda event: event["status"] == "downloading")

    pull_error(client, 409, "model_busy", model="fork/tiny-GGUF")

    response = client.delete("/v1/api/delete", json={"filename": FILE})
    assert response.status_code == 409 and response.get_json()["code"] == "model_busy"
    assert content_gets(hub, "fork/tiny-GGUF", FILE) == []
    stream.close()


def test_delete_of_unknown_model_is_model_not_found(client, repo):
    for body in ({"filename": "nothing.Q4_K_M.gguf"}, {"model": "nothing"}, {"model": "acme/never-pulled"}):
        response = client.delete("/v1/api/delete", json=body)
        assert response.status_code == 404 and response.get_json()["code"] == "model_not_found", body


# --- the backend behind the proxy -----------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/generate", "/v1/completions", "/v1/chat/completions"])
def test_closed_backend_port_is_backend_unavailable(client, path):
    response = client.post(path, json={"model": "m", "prompt": "hi", "messages": [], "max_tokens": 1})

    assert response.status_code == 502
    body = response.get_json()
    if path == "/v1/generate":
        assert body == {"status": "error", "error": body["error"], "code": "backend_unavailable"}
    else:  # OpenAI-compatible endpoints answer in OpenAI's error shape
        assert body == {"error": {"message": body["error"]["message"], "type": "server_error",
                                  "code": "backend_unavailable"}}


def test_slow_backend_is_backend_timeout(make_app):
    with slow_backend(delay_s=2.0) as url:
        client = make_app(backend_url=url, backend_timeout_s=0.3).test_client()

        response = client.post("/v1/generate", json={"model": "m", "prompt": "hi"})

    assert response.status_code == 504
    assert response.get_json()["code"] == "backend_timeout"
