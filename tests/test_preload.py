"""PRELOAD_MODELS: background pulls at start that never block readiness and show in /v1/api/pulls."""
from __future__ import annotations

import hashlib
import time

import pytest

from proxy.errors import ProxyError
from proxy.declared.preload import parse_preload_entry
from tests.fakes.hub import Fault
from tests.helpers import free_port
from tests.pull_fixtures import wait_until

GOOD = "acme/good-GGUF"
FILE = "good.Q4_K_M.gguf"


def finished_pulls(client, count: int) -> list[dict]:
    def done():
        pulls = client.get("/v1/api/pulls").get_json()["pulls"]
        finished = [p for p in pulls if p["status"] in ("complete", "error")]
        return pulls if len(finished) >= count else None

    return wait_until(done, timeout_s=20, what=f"{count} finished pulls")


def by_model(pulls: list[dict]) -> dict[str, dict]:
    return {p["model"]: p for p in pulls}


def test_preload_runs_in_the_background_and_shows_each_outcome(make_app, hub, make_gguf, models_dir):
    source = make_gguf(FILE, 1024 * 1024)
    hub.add_repo(GOOD, files={FILE: source})
    hub.faults.add(Fault.hang(seconds=1.0), on="api")  # resolving is slow: it must not hold create_app up
    hub.throttle_bps = 2 * 1024 * 1024  # and so is the download
    app = make_app(preload_models=(f"{GOOD}:Q4_K_M", "acme/missing", "not a repo"), pull_connections=1)
    client = app.test_client()
    assert client.get("/livez").status_code == 200
    assert client.get("/v1/health").status_code == 503  # no backend here; what matters is that it answers
    # Resolving alone takes the Hub a second: the app answered before the preload could have got anywhere.
    assert GOOD not in by_model([p for p in client.get("/v1/api/pulls").get_json()["pulls"]
                                 if p["status"] in ("complete", "error")])

    pulls = by_model(finished_pulls(client, 3))
    assert pulls[GOOD]["status"] == "complete" and pulls[GOOD]["filename"] == FILE
    assert (models_dir / FILE).read_bytes() == source.read_bytes()
    assert pulls["acme/missing"]["status"] == "error" and pulls["acme/missing"]["code"] == "repo_not_found"
    assert pulls["not a repo"]["code"] == "invalid_repo_id"
    assert all(p["error"] for p in pulls.values() if p["status"] == "error")
    assert client.get(f"/v1/api/pulls/{pulls['acme/missing']['id']}").get_json()["code"] == "repo_not_found"


def test_health_answers_while_a_preload_downloads(make_app, hub, make_gguf, models_dir):
    hub.add_repo(GOOD, files={FILE: make_gguf(FILE, 1024 * 1024)})
    hub.throttle_bps = 1024 * 1024
    client = make_app(preload_models=(f"{GOOD}/{FILE}",), pull_connections=1).test_client()
    wait_until(lambda: any(p["status"] == "downloading" for p in client.get("/v1/api/pulls").get_json()["pulls"]),
               what="the preload to download")
    assert client.get("/livez").status_code == 200
    assert client.get("/v1/health").status_code == 503
    assert client.get("/v1/api/pulls").get_json()["pulls"][0]["status"] == "downloading", "answered mid-download"
    assert finished_pulls(client, 1)[0]["status"] == "complete"


def test_preload_with_the_hub_down_ends_as_a_failed_pull(make_app, models_dir):
    client = make_app(preload_models=(GOOD,), hf_endpoint=f"http://127.0.0.1:{free_port()}",
                      pull_max_retries=2).test_client()
    assert client.get("/livez").status_code == 200
    [failed] = finished_pulls(client, 1)
    assert failed["model"] == GOOD and failed["status"] == "error" and failed["code"] == "hub_unavailable"


def test_an_installed_preload_shows_as_cached_after_a_restart(make_app, hub, make_gguf, models_dir):
    source = make_gguf(FILE, 256 * 1024)
    hub.add_repo(GOOD, files={FILE: source})
    first = make_app(preload_models=(GOOD,)).test_client()
    assert finished_pulls(first, 1)[0]["status"] == "complete"
    restarted = make_app(preload_models=(GOOD,)).test_client()
    [again] = finished_pulls(restarted, 1)
    assert again["status"] == "complete" and again["cached"] is True
    assert again["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()


@pytest.mark.parametrize("entry, repo, filename, quant", [
    ("owner/name", "owner/name", None, None),
    ("owner/name:q8_0", "owner/name", None, "Q8_0"),
    ("owner/name/sub/dir/model.Q4_K_M.gguf", "owner/name", "sub/dir/model.Q4_K_M.gguf", None),
])
def test_preload_entries_are_parsed_like_pull_requests(entry, repo, filename, quant):
    request = parse_preload_entry(entry)
    assert (request.repo, request.filename, request.quant) == (repo, filename, quant)


@pytest.mark.parametrize("entry, code", [
    ("owner", "invalid_repo_id"), ("owner/name/../escape.gguf", "unsafe_filename"),
    ("owner/name/readme.md", "not_gguf"), ("owner/name:Q4 K M", "invalid_request"),
])
def test_bad_preload_entries_fail_with_the_pull_endpoints_codes(entry, code):
    with pytest.raises(ProxyError) as caught:
        parse_preload_entry(entry)
    assert caught.value.code == code


def test_preloaded_and_refused_pulls_are_counted_as_the_endpoints_are(make_app, hub, make_gguf, models_dir):
    hub.add_repo(GOOD, files={FILE: make_gguf(FILE, 256 * 1024)})
    client = make_app(preload_models=(GOOD, "acme/missing")).test_client()
    finished_pulls(client, 2)
    counted = ('proxy_pulls_total{code="",outcome="complete"} 1.0',
               'proxy_pulls_total{code="repo_not_found",outcome="rejected"} 1.0')
    wait_until(lambda: all(line in client.get("/metrics").get_data(as_text=True) for line in counted),
               what="both preloads counted")
