"""Parts reuse the CDN location the Hub redirected to, and ask the Hub again when it expires."""
from __future__ import annotations

from tests.fakes.hub import Fault
from tests.pull_fixtures import (
    REPO, KiB, pull, same_bytes,
)

FILE = "tiny.Q4_K_M.gguf"
SIZE = 2048 * KiB  # 8 parts of 256 KiB


def test_parts_after_the_first_go_straight_to_the_cdn_without_the_token(make_app, hub, make_gguf, models_dir):
    source = make_gguf(FILE, SIZE)
    hub.add_repo(REPO, files={FILE: source})
    client = make_app(pull_connections=1, hf_token="hf_secret_token_1").test_client()
    hub.tokens.add("hf_secret_token_1")
    hub.clear_log()
    assert pull(client, model=REPO)[-1]["status"] == "complete"
    resolve_gets = hub.requests_to(f"/{REPO}/resolve/", method="GET")
    cdn_gets = hub.requests_to("/cdn-lfs/", method="GET")
    assert len(resolve_gets) == 1 and len(cdn_gets) == 8
    assert not any(record.authorization for record in cdn_gets)
    assert same_bytes(models_dir / FILE, source)


def test_an_expired_cdn_url_sends_the_next_request_back_to_the_hub(make_app, hub, make_gguf, models_dir):
    source = make_gguf(FILE, SIZE)
    hub.add_repo(REPO, files={FILE: source})
    client = make_app(pull_connections=1).test_client()
    hub.faults.add(Fault.status(403, times=2), file=FILE, on="cdn")
    hub.clear_log()
    assert pull(client, model=REPO)[-1]["status"] == "complete"
    assert len(hub.requests_to(f"/{REPO}/resolve/", method="GET")) == 3  # first, then after each 403
    assert same_bytes(models_dir / FILE, source)


def test_a_mirror_without_siblings_in_model_info_is_listed_from_its_tree(make_app, hub, make_gguf, models_dir):
    source = make_gguf(FILE, SIZE)
    hub.add_repo(REPO, files={FILE: source})
    hub.repo(REPO).lists_siblings = False
    events = pull(make_app().test_client(), model=REPO)
    assert events[-1]["status"] == "complete" and events[-1]["sha256"] == hub.blob(REPO, FILE).sha256
    assert any(record.path.startswith(f"/api/models/{REPO}/tree/") for record in hub.requests())
    assert same_bytes(models_dir / FILE, source)
