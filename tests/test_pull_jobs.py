"""Pull jobs: shared downloads, the queue, clients that leave, async pulls, the pulls view, shutdown."""
from __future__ import annotations

import hashlib
import time

from proxy.services import services_of
from tests.fakes.hub import Fault
from tests.pull_fixtures import (
    REPO, KiB, MiB, content_gets, open_stream, pull, range_start, same_bytes, staging_files, statuses,
    top_level_ggufs, wait_until,
)

FILE = "tiny.Q4_K_M.gguf"
CHUNK = 256 * KiB


def part_ranges(size: int, chunk: int) -> list[str]:
    return [f"bytes={start}-{min(start + chunk, size) - 1}" for start in range(0, size, chunk)]


def pulls_by_filename(client) -> dict[str, dict]:
    response = client.get("/v1/api/pulls")
    assert response.status_code == 200
    return {entry["filename"]: entry for entry in response.get_json()["pulls"]}


def test_two_pulls_of_one_file_share_one_download(make_app, hub, make_gguf, models_dir):
    source = make_gguf(FILE, 2 * MiB)
    hub.add_repo(REPO, files={FILE: source})
    hub.throttle_bps = 1 * MiB  # per connection: the download lasts about half a second
    client = make_app(pull_connections=4, pull_chunk_bytes=CHUNK).test_client()

    first = open_stream(client, model=REPO)
    seen = first.until(lambda event: event["status"] == "downloading" and event["completed"] > 0)
    second = open_stream(client, model=REPO)
    joined = [second.next(), second.next()]

    assert joined[0] == {"status": "starting", "model": REPO, "filename": FILE}
    assert joined[1]["status"] == "downloading" and joined[1]["completed"] >= seen["completed"]
    first_events, second_events = first.rest(), second.rest()
    assert first_events[-1]["status"] == "complete" and second_events[-1] == first_events[-1]
    assert set(statuses(second_events[2:])) <= {"downloading", "verifying", "complete"}
    assert "verifying" in statuses(second_events)
    gets = content_gets(hub, REPO, FILE)
    assert sorted(r.range for r in gets) == sorted(part_ranges(2 * MiB, CHUNK)), "each part fetched once"
    assert hub.bytes_served(hub.cdn_path(REPO, FILE)) == 2 * MiB
    assert same_bytes(models_dir / FILE, source)


def test_pulls_beyond_concurrency_are_queued_with_positions_and_run_after(make_app, hub, make_gguf, models_dir):
    names = {"acme/a-GGUF": "a.Q4_K_M.gguf", "acme/b-GGUF": "b.Q4_K_M.gguf", "acme/c-GGUF": "c.Q4_K_M.gguf"}
    for repo, name in names.items():
        hub.add_repo(repo, files={name: make_gguf(name, 512 * KiB)})
    hub.faults.add(Fault.stall(after_bytes=16 * KiB, seconds=0.5), file="a.Q4_K_M.gguf")
    client = make_app(pull_concurrency=1, pull_connections=1, pull_stall_timeout_s=5).test_client()

    running = open_stream(client, model="acme/a-GGUF")
    running.until(lambda event: event["status"] == "downloading")
    waiting = [open_stream(client, model=repo) for repo in ("acme/b-GGUF", "acme/c-GGUF")]

    assert [stream.next() for stream in waiting] == [
        {"status": "starting", "model": "acme/b-GGUF", "filename": "b.Q4_K_M.gguf"},
        {"status": "starting", "model": "acme/c-GGUF", "filename": "c.Q4_K_M.gguf"}]
    assert [stream.next() for stream in waiting] == [{"status": "queued", "position": 1},
                                                      {"status": "queued", "position": 2}]
    listed = pulls_by_filename(client)
    assert listed["a.Q4_K_M.gguf"]["status"] == "downloading" and listed["a.Q4_K_M.gguf"]["model"] == "acme/a-GGUF"
    assert listed["b.Q4_K_M.gguf"]["status"] == "queued" and listed["b.Q4_K_M.gguf"]["position"] == 1
    assert listed["c.Q4_K_M.gguf"]["position"] == 2
    assert all(entry["id"] for entry in listed.values())

    assert running.rest()[-1]["status"] == "complete"
    third = waiting[1].rest()
    assert {"status": "queued", "position": 1} in third, "moved up when the first pull ended"
    assert third[-1]["status"] == "complete" and waiting[0].rest()[-1]["status"] == "complete"
    starts = {repo: min(r.started for r in content_gets(hub, repo, name)) for repo, name in names.items()}
    a_done = max(r.started for r in content_gets(hub, "acme/a-GGUF", names["acme/a-GGUF"]))
    assert a_done < starts["acme/b-GGUF"] < starts["acme/c-GGUF"], "one download at a time, in order"
    assert {entry["status"] for entry in pulls_by_filename(client).values()} == {"complete"}
    assert top_level_ggufs(models_dir) == sorted(names.values())


def test_client_that_disconnects_does_not_stop_the_download(make_app, hub, make_gguf, models_dir):
    source = make_gguf(FILE, 2 * MiB)
    hub.add_repo(REPO, files={FILE: source})
    hub.throttle_bps = 1 * MiB
    client = make_app(pull_connections=4, pull_chunk_bytes=CHUNK).test_client()

    stream = open_stream(client, model=REPO)
    stream.until(lambda event: event["status"] == "downloading" and event["completed"] > 0)
    stream.close()
    job_id = pulls_by_filename(client)[FILE]["id"]

    final = wait_until(lambda: (s := client.get(f"/v1/api/pulls/{job_id}").get_json())["status"] == "complete" and s,
                       what="the pull to complete")
    assert final["id"] == job_id and final["model"] == REPO and final["filename"] == FILE
    assert final["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert same_bytes(models_dir / FILE, source)


def test_async_pull_answers_202_and_its_status_url_reaches_complete(client, hub, make_gguf, models_dir):
    source = make_gguf(FILE, 512 * KiB)
    hub.add_repo(REPO, files={FILE: source})

    response = client.post("/v1/api/pull", json={"model": REPO, "async": True})

    assert response.status_code == 202
    body = response.get_json()
    assert set(body) == {"id", "status", "status_url"} and body["status"] in ("starting", "downloading")
    assert body["status_url"].endswith(f"/v1/api/pulls/{body['id']}")
    final = wait_until(lambda: (s := client.get(body["status_url"]).get_json())["status"] == "complete" and s,
                       what="the async pull to complete")
    assert final["id"] == body["id"] and final["path"] == str((models_dir / FILE).resolve())
    assert same_bytes(models_dir / FILE, source)

    again = client.post("/v1/api/pull", json={"model": REPO, "async": True})
    assert again.status_code == 200 and again.get_json()["status"] == "complete" and again.get_json()["cached"]


def test_unknown_pull_id_is_404(client):
    response = client.get("/v1/api/pulls/does-not-exist")
    assert response.status_code == 404 and response.get_json()["status"] == "error"


def test_stream_false_answers_only_the_final_object(client, hub, make_gguf, models_dir):
    hub.add_repo(REPO, files={FILE: make_gguf(FILE, 256 * KiB)})

    response = client.post("/v1/api/pull", json={"model": REPO, "stream": False})

    assert response.status_code == 200 and response.is_json
    assert response.get_json()["status"] == "complete" and response.get_json()["filename"] == FILE


def test_shutdown_ends_a_stalled_pull_at_once_and_the_next_app_resumes_it(make_app, hub, make_gguf, models_dir):
    source = make_gguf(FILE, 1 * MiB)
    hub.add_repo(REPO, files={FILE: source})
    hub.add_repo("acme/other-GGUF", files={"other.Q4_K_M.gguf": make_gguf("other.gguf")})
    hub.faults.add(Fault.stall(after_bytes=300 * KiB), file=FILE)
    app = make_app(pull_connections=1, pull_chunk_bytes=4 * MiB, pull_stall_timeout_s=30, pull_concurrency=1)
    stream = open_stream(app.test_client(), model=REPO)
    stream.until(lambda event: event["status"] == "downloading" and event["completed"] >= 300 * KiB)
    queued = open_stream(app.test_client(), model="acme/other-GGUF")
    assert queued.until(lambda event: event["status"] == "queued")["position"] == 1

    started = time.monotonic()
    services_of(app).pulls.shutdown(wait_s=5)
    events, queued_events = stream.rest(), queued.rest()

    assert time.monotonic() - started < 2, "a stalled socket does not hold the shutdown for the stall timeout"
    assert events[-1]["status"] == "error" and events[-1]["code"] == "pull_stopped"
    assert queued_events[-1]["status"] == "error" and queued_events[-1]["code"] == "pull_stopped"
    assert top_level_ggufs(models_dir) == []
    assert staging_files(models_dir) == [FILE + ".partial", FILE + ".partial.json"]
    events = pull(make_app().test_client(), model=REPO)
    assert events[-1]["status"] == "complete"
    assert [range_start(r) for r in content_gets(hub, REPO, FILE)] == [0, 300 * KiB]
    assert same_bytes(models_dir / FILE, source)


def test_a_queued_async_pull_survives_a_shutdown_and_the_next_start_resumes_it(make_app, hub, make_gguf, models_dir):
    hub.add_repo(REPO, files={FILE: make_gguf(FILE, 1 * MiB)})
    other, source = "other.Q4_K_M.gguf", make_gguf("other.gguf", 256 * KiB)
    hub.add_repo("acme/other-GGUF", files={other: source})
    hub.faults.add(Fault.stall(after_bytes=100 * KiB), file=FILE)  # holds the only slot until the shutdown
    app = make_app(pull_connections=1, pull_stall_timeout_s=30, pull_concurrency=1)
    client = app.test_client()
    running = open_stream(client, model=REPO)
    running.until(lambda event: event["status"] == "downloading")
    accepted = client.post("/v1/api/pull", json={"model": "acme/other-GGUF", "async": True})
    assert accepted.status_code == 202 and accepted.get_json()["status"] == "queued"

    services_of(app).pulls.shutdown(wait_s=5)
    stopped = client.get(accepted.get_json()["status_url"]).get_json()
    restarted = make_app().test_client()  # nobody asks again: the new start resumes both pulls by itself
    resumed = wait_until(lambda: (p := pulls_by_filename(restarted)).get(other, {}).get("status") == "complete" and p,
                         what="the queued pull to be resumed and complete")

    assert stopped["status"] == "error" and stopped["code"] == "pull_stopped", stopped
    assert running.rest()[-1]["code"] == "pull_stopped"
    assert resumed[other]["model"] == "acme/other-GGUF"
    assert same_bytes(models_dir / other, source)
