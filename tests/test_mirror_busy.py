"""A mirror that answers 503 with Retry-After (a pull-through peer still fetching the file) is waited on, not
counted as a failed attempt: listing and bytes come from it, none from the Hub's CDN."""
from __future__ import annotations

import hashlib

import pytest

from tests.fakes.hub import Fault, FakeHub
from tests.pull_fixtures import REPO, KiB, hub, make_app, make_gguf, models_dir, pull  # noqa: F401

FILE = "tiny.Q4_K_M.gguf"


@pytest.mark.parametrize("place", ["api", "resolve", "content"])
def test_a_busy_mirror_is_waited_on_not_skipped(make_app, hub, make_gguf, place):
    source = make_gguf(FILE, 256 * KiB)
    with FakeHub() as mirror:
        assert mirror.add_repo(REPO, files={FILE: source}) == hub.add_repo(REPO, files={FILE: source})
        busy = mirror.faults.add(Fault.status(503, times=3, retry_after="1"), repo=REPO, on=place)
        client = make_app(hf_mirrors=(mirror.url,), pull_connections=1, pull_max_retries=2).test_client()

        final = pull(client, model=REPO, filename=FILE)[-1]

        assert busy.fired == 3
        assert final["status"] == "complete", final
        assert final["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
        assert final["source_host"] == mirror.url.removeprefix("http://")
        assert hub.bytes_served(hub.cdn_path(REPO, FILE)) == 0, "no byte from the Hub's CDN"
