"""HF_MIRRORS with real gunicorn proxies: B pulls what A holds from A, not the Hub's CDN; what A lacks, from the
Hub."""
from __future__ import annotations

import hashlib

import requests

from scripts.stack import proxy
from tests.helpers import free_port
from tests.pull_fixtures import REPO, KiB, hub, make_gguf  # noqa: F401

HELD, MISSING = "tiny.Q4_K_M.gguf", "tiny.Q8_0.gguf"


def pull_over_http(url: str, **body) -> dict:
    response = requests.post(f"{url}/v1/api/pull", json={**body, "stream": False}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def provenance(url: str, filename: str) -> dict:
    return next(m for m in requests.get(f"{url}/v1/api/models", timeout=10).json()["models"]
                if m["filename"] == filename)


def test_a_peer_pulls_from_its_mirror_what_it_holds_and_from_the_hub_what_it_lacks(hub, make_gguf, tmp_path):
    held, missing = make_gguf(HELD, 512 * KiB), make_gguf(MISSING, 256 * KiB)
    hub.add_repo(REPO, files={HELD: held, MISSING: missing})
    dead_backend = f"http://127.0.0.1:{free_port()}"
    with proxy(tmp_path / "a", tmp_path, hub.url, dead_backend) as (a_url, _):
        assert pull_over_http(a_url, model=REPO, filename=HELD)["status"] == "complete"
        a_host = a_url.removeprefix("http://")
        with proxy(tmp_path / "b", tmp_path, hub.url, dead_backend, env={"HF_MIRRORS": a_url}) as (b_url, _):
            hub.clear_log()
            done = pull_over_http(b_url, model=REPO, filename=HELD)

            assert done["status"] == "complete"
            assert hub.bytes_served(hub.cdn_path(REPO, HELD)) == 0, "no byte from the Hub's CDN"
            assert done["source_host"] == a_host, "the complete line names where the bytes came from"
            assert done["sha256"] == hashlib.sha256(held.read_bytes()).hexdigest()
            assert (tmp_path / "b" / HELD).read_bytes() == held.read_bytes()
            assert provenance(b_url, HELD)["source_host"] == a_host

            fallback = pull_over_http(b_url, model=REPO, filename=MISSING)
            assert fallback["status"] == "complete"
            assert fallback["source_host"] not in (None, a_host)
            assert hub.bytes_served(hub.cdn_path(REPO, MISSING)) >= 256 * KiB
            assert (tmp_path / "b" / MISSING).read_bytes() == missing.read_bytes()
            assert provenance(b_url, MISSING)["source_host"] != a_host
