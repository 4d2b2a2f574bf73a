"""`verify: "load"`: a backend that answered but could not load the file fails the pull and quarantines the file;
one that could not be reached says so and keeps the verified file for a later smoke test."""
from __future__ import annotations

from tests.pull_fixtures import REPO, KiB, content_gets, pull, same_bytes, slow_backend, statuses, top_level_ggufs

FILE = "tiny.Q4_K_M.gguf"


def installed(client) -> dict[str, dict]:
    return {model["filename"]: model for model in client.get("/v1/api/models").get_json()["models"]}


def test_unreachable_backend_keeps_the_verified_file_and_a_later_load_pull_tests_it_without_downloading(
        make_app, hub, make_gguf, models_dir):
    source = make_gguf(FILE, 256 * KiB)
    hub.add_repo(REPO, files={FILE: source})
    down = make_app().test_client()  # its backend URL is a port nothing listens on

    failed = pull(down, model=REPO, verify="load")
    kept = installed(down).get(FILE)
    downloads = len(content_gets(hub, REPO, FILE))
    with slow_backend(0) as backend_url:
        up = make_app(backend_url=backend_url).test_client()
        tested = pull(up, model=REPO, verify="load")
        again = pull(up, model=REPO, verify="load")

    assert statuses(failed)[-2:] == ["smoke_test", "error"] and failed[-1]["code"] == "backend_unavailable", failed
    assert kept and kept["intact"] and kept["repo"] == REPO and kept["smoke_tested"] is False, kept
    assert statuses(tested)[-2:] == ["smoke_test", "complete"] and "cached" not in tested[-1], tested
    assert len(content_gets(hub, REPO, FILE)) == downloads, "tested without downloading it again"
    assert again == [{**again[-1], "status": "complete", "cached": True}]
    assert installed(up)[FILE]["smoke_tested"] is True
    assert same_bytes(models_dir / FILE, source)


def test_backend_that_cannot_load_the_file_fails_the_smoke_test_and_quarantines_it(
        make_app, hub, make_gguf, models_dir):
    hub.add_repo(REPO, files={FILE: make_gguf(FILE, 256 * KiB)})
    with slow_backend(0, status=500) as backend_url:
        client = make_app(backend_url=backend_url).test_client()
        events = pull(client, model=REPO, verify="load")
        answer = client.post("/v1/api/pull", json={"model": REPO, "verify": "load", "stream": False})

    assert events[-1]["status"] == "error" and events[-1]["code"] == "smoke_test_failed", events
    assert answer.status_code == 422 and answer.get_json()["code"] == "smoke_test_failed"
    assert top_level_ggufs(models_dir) == [] and installed(client) == {}
    assert (models_dir / ".quarantine" / FILE).is_file()
