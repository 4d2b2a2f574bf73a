"""A mirror whose bytes fail the Hub's sha256 is not trusted: its bytes are thrown away and the file is fetched
from the next source (the next mirror, then the Hub); the pull completes with the Hub's sha256 and names the
source_host the good bytes came from (docs/api.md, Serving peers)."""
from __future__ import annotations

import hashlib

from tests.fakes.hub import Fault, FakeHub
from tests.pull_fixtures import REPO, KiB, hub, make_app, make_gguf, models_dir, pull  # noqa: F401

FILE = "tiny.Q4_K_M.gguf"


def test_bad_bytes_from_a_mirror_fall_back_to_the_hub(make_app, hub, make_gguf, models_dir):
    source = make_gguf(FILE, 512 * KiB)
    with FakeHub() as mirror:
        # Same listing (the Hub's LFS sha256), but every byte it serves from 100 KiB on is inverted.
        assert mirror.add_repo(REPO, files={FILE: source}) == hub.add_repo(REPO, files={FILE: source})
        corrupt = mirror.faults.add(Fault.wrong_bytes(times=None, from_offset=100 * KiB), repo=REPO)
        client = make_app(hf_mirrors=(mirror.url,)).test_client()

        final = pull(client, model=REPO, filename=FILE)[-1]

        assert corrupt.fired >= 1, "the mirror was asked first and served its bad bytes"
        assert final["status"] == "complete", final
        assert final["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
        assert final["source_host"] == hub.url.removeprefix("http://")
        assert hub.bytes_served(hub.cdn_path(REPO, FILE)) >= 512 * KiB, "the good bytes came from the Hub"
        assert (models_dir / FILE).read_bytes() == source.read_bytes()
        installed = client.get("/v1/api/models").get_json()["models"]
        assert [(m["filename"], m["source_host"]) for m in installed] == [(FILE, final["source_host"])]


def test_bad_bytes_from_the_first_mirror_fall_back_to_the_next_mirror(make_app, hub, make_gguf, models_dir):
    source = make_gguf(FILE, 512 * KiB)
    hub.add_repo(REPO, files={FILE: source})
    with FakeHub() as bad, FakeHub() as good:
        for mirror in (bad, good):
            mirror.add_repo(REPO, files={FILE: source})
        bad.faults.add(Fault.wrong_bytes(times=None), repo=REPO)
        client = make_app(hf_mirrors=(bad.url, good.url)).test_client()

        final = pull(client, model=REPO, filename=FILE)[-1]

        assert final["status"] == "complete", final
        assert final["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
        assert final["source_host"] == good.url.removeprefix("http://")
        assert hub.bytes_served(hub.cdn_path(REPO, FILE)) == 0, "no byte from the Hub's CDN"
        assert (models_dir / FILE).read_bytes() == source.read_bytes()


def test_bad_bytes_from_every_source_is_checksum_mismatch(make_app, hub, make_gguf, models_dir):
    source = make_gguf(FILE, 256 * KiB)
    with FakeHub() as mirror:
        mirror.add_repo(REPO, files={FILE: source})
        hub.add_repo(REPO, files={FILE: source})
        for fake in (mirror, hub):
            fake.faults.add(Fault.wrong_bytes(times=None), repo=REPO)
        client = make_app(hf_mirrors=(mirror.url,)).test_client()

        final = pull(client, model=REPO, filename=FILE)[-1]

        assert (final["status"], final["code"]) == ("error", "checksum_mismatch"), final
        assert not (models_dir / FILE).exists()
