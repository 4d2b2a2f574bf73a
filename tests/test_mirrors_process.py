"""HF_MIRRORS with real gunicorn proxies: B pulls what A holds from A, not the Hub's CDN; what A lacks, from the
Hub."""
from __future__ import annotations

import contextlib
import hashlib
from concurrent.futures import ThreadPoolExecutor

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


def test_peers_pulling_one_file_through_a_pull_through_proxy_get_it_from_the_hub_once(hub, make_gguf, tmp_path):
    size = 4 * 1024 * KiB
    source = make_gguf(HELD, size)
    hub.add_repo(REPO, files={HELD: source})
    hub.throttle_bps = 2 * 1024 * KiB  # two seconds for A's download: the peers ask while it runs
    dead_backend = f"http://127.0.0.1:{free_port()}"
    for name in "abcd":
        (tmp_path / f"log-{name}").mkdir()
    with contextlib.ExitStack() as stack:
        a_url, _ = stack.enter_context(proxy(tmp_path / "a", tmp_path / "log-a", hub.url, dead_backend,
                                             env={"MIRROR_PULL_THROUGH": "true"}))
        peers = [stack.enter_context(proxy(tmp_path / name, tmp_path / f"log-{name}", hub.url, dead_backend,
                                           env={"HF_MIRRORS": a_url}))[0] for name in "bcd"]
        hub.clear_log()
        with ThreadPoolExecutor(len(peers)) as pool:
            finals = list(pool.map(lambda url: pull_over_http(url, model=REPO, filename=HELD), peers))

        served = hub.bytes_served(hub.cdn_path(REPO, HELD)) + hub.bytes_served(f"/{REPO}/resolve/")
        print(f"the fake Hub served {served} bytes of a {size}-byte file to 3 peers through A")
        assert size <= served <= 1.05 * size, f"the Hub served {served} bytes of a {size}-byte file"
        sha256 = hashlib.sha256(source.read_bytes()).hexdigest()
        assert [(f["status"], f["sha256"]) for f in finals] == [("complete", sha256)] * 3, finals
        assert {f["source_host"] for f in finals} == {a_url.removeprefix("http://")}
        for name in "bcd":
            assert (tmp_path / name / HELD).read_bytes() == source.read_bytes()


def test_a_peer_waits_on_a_pull_through_proxy_for_as_long_as_its_pull_makes_progress(hub, make_gguf, tmp_path):
    """Longer than a mirror's busy wait (6 s): A's 503s say how much of the file it has, and while that grows
    the peer keeps waiting instead of fetching the file from the Hub a second time."""
    size = 4 * 1024 * KiB
    source = make_gguf(HELD, size)
    hub.add_repo(REPO, files={HELD: source})
    hub.throttle_bps = 512 * KiB  # one connection for a file this small: A's pull takes 8 s
    dead_backend = f"http://127.0.0.1:{free_port()}"
    (tmp_path / "log-a").mkdir()
    (tmp_path / "log-b").mkdir()
    with proxy(tmp_path / "a", tmp_path / "log-a", hub.url, dead_backend, env={"MIRROR_PULL_THROUGH": "true"}) \
            as (a_url, _), \
            proxy(tmp_path / "b", tmp_path / "log-b", hub.url, dead_backend, env={"HF_MIRRORS": a_url}) as (b_url, _):
        hub.clear_log()
        final = pull_over_http(b_url, model=REPO, filename=HELD)

        served = hub.bytes_served(hub.cdn_path(REPO, HELD)) + hub.bytes_served(f"/{REPO}/resolve/")
        assert final["status"] == "complete" and final["source_host"] == a_url.removeprefix("http://")
        assert size <= served <= 1.05 * size, f"the Hub served {served} bytes of a {size}-byte file"
