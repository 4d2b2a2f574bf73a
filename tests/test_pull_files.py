"""Which files a pull takes and how they land: cache, quant choice, split sets, revisions, listing, delete,
the token's secrecy, and nothing under a final name before every check passed."""
from __future__ import annotations

import hashlib
import json
import logging
import shutil

import pytest

from scripts.gguf_files import truncate_file, write_gguf
from tests.fakes.hub import Fault
from tests.pull_fixtures import (
    REPO, TOKEN, KiB, MiB, content_gets, open_stream, pull, pull_error, same_bytes, staging_files, statuses,
    top_level_ggufs,
)

FILE = "tiny.Q4_K_M.gguf"


def sha256_of(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- cache ----------------------------------------------------------------------------------------


def test_second_pull_of_an_installed_file_answers_one_cached_complete_line(client, hub, make_gguf, models_dir):
    source = make_gguf(FILE, 256 * KiB)
    hub.add_repo(REPO, files={FILE: source})
    first = pull(client, model=REPO)
    fetched = len(content_gets(hub, REPO, FILE))

    second = pull(client, model=REPO)

    assert len(second) == 1
    assert second[0] == {**first[-1], "cached": True}
    assert len(content_gets(hub, REPO, FILE)) == fetched, "no byte fetched again"
    response = client.post("/v1/api/pull", json={"model": REPO, "stream": False})
    assert response.status_code == 200 and response.get_json()["cached"] is True


def test_installed_file_that_no_longer_matches_is_fetched_again(client, hub, make_gguf, models_dir):
    source = make_gguf(FILE, 256 * KiB)
    hub.add_repo(REPO, files={FILE: source})
    pull(client, model=REPO)
    truncate_file(models_dir / FILE, -10)

    events = pull(client, model=REPO)

    assert events[-1]["status"] == "complete" and "cached" not in events[-1]
    assert same_bytes(models_dir / FILE, source)


def test_complete_line_carries_path_size_sha_and_resolved_commit(client, hub, make_gguf, models_dir):
    source = make_gguf(FILE, 300 * 1000)
    commit = hub.add_repo(REPO, files={FILE: source})

    events = pull(client, model=REPO)

    assert statuses(events)[0] == "starting" and statuses(events)[-2:] == ["verifying", "complete"]
    assert {"downloading"} == set(statuses(events)[1:-2])
    last_progress = [e for e in events if e["status"] == "downloading"][-1]
    assert last_progress["completed"] == last_progress["total"] == 300 * 1000 and last_progress["percent"] == 100.0
    expected = {
        "status": "complete", "model": REPO, "filename": FILE, "path": str((models_dir / FILE).resolve()),
        "size_mb": 0.3, "sha256": sha256_of(source), "revision": commit,
    }
    assert {key: events[-1].get(key) for key in expected} == expected


# --- which file -------------------------------------------------------------------------------------


@pytest.mark.parametrize("available, body, chosen", [
    (["Q2_K", "Q4_K_M", "Q8_0", "F16"], {}, "Q4_K_M"),
    (["Q2_K", "Q8_0", "F16"], {}, "Q8_0"),
    (["F16", "Q5_K_M", "Q3_K_S"], {}, "Q3_K_S"),
    (["Q2_K", "Q4_K_M", "Q8_0"], {"quant": "q8_0"}, "Q8_0"),
    (["Q2_K", "Q4_K_M", "Q8_0"], {"model_suffix": ":Q2_K"}, "Q2_K"),
    (["Q2_K", "Q4_K_M", "Q8_0"], {"model_suffix": ":q2_k"}, "Q2_K"),
], ids=["default-Q4_K_M", "then-Q8_0", "then-smallest", "quant-field", "model-suffix", "suffix-any-case"])
def test_quant_selection(client, hub, make_gguf, models_dir, available, body, chosen):
    sizes = {"Q2_K": 40, "Q3_K_S": 50, "Q4_K_M": 60, "Q5_K_M": 70, "Q8_0": 80, "F16": 90}
    files = {f"m.{quant}.gguf": make_gguf(f"m.{quant}.gguf", sizes[quant] * KiB) for quant in available}
    files["mmproj-m-F16.gguf"] = make_gguf("mmproj-m-F16.gguf", 8 * KiB)  # smallest, but a projector: never chosen
    hub.add_repo(REPO, files=files)
    body = dict(body)
    model = REPO + body.pop("model_suffix", "")

    events = pull(client, model=model, **body)

    assert events[-1]["filename"] == f"m.{chosen}.gguf"
    assert top_level_ggufs(models_dir) == [f"m.{chosen}.gguf"]
    if not body and model == REPO:
        assert client.get(f"/v1/api/files?model={REPO}").get_json()["recommended"] == f"m.{chosen}.gguf"


def write_split_set(folder, base: str, count: int) -> dict[str, object]:
    """`count` parts, each a valid GGUF file on its own, as llama.cpp's gguf-split writes them."""
    parts = {}
    for index in range(1, count + 1):
        name = f"{base}-{index:05d}-of-{count:05d}.gguf"
        meta = {"split.no": index - 1, "split.count": count, "split.tensors.count": count * 2}
        parts[name] = write_gguf(folder / name, tensor_bytes=(20 + index) * KiB, random_seed=index, metadata=meta)
    return parts


def test_split_set_downloads_every_part_lists_them_and_deletes_them_together(client, hub, models_dir, tmp_path):
    parts = write_split_set(tmp_path, "big.Q4_K_M", 3)
    hub.add_repo(REPO, files={**parts, "README.md": b"# split\n"})

    events = pull(client, model=REPO)

    assert events[-1]["status"] == "complete"
    assert events[-1]["files"] == sorted(parts)
    assert events[-1]["filename"] == "big.Q4_K_M-00001-of-00003.gguf"
    assert top_level_ggufs(models_dir) == sorted(parts)
    assert all(same_bytes(models_dir / name, path) for name, path in parts.items())
    listing = client.get(f"/v1/api/files?model={REPO}").get_json()
    assert [(f["filename"], f["split"]) for f in listing["files"]] == [
        (name, {"index": i, "count": 3}) for i, name in enumerate(sorted(parts), start=1)]
    assert [m["id"] for m in client.get("/v1/models").get_json()["data"]] == ["big.Q4_K_M"]
    assert len(pull(client, model=REPO, filename="big.Q4_K_M-00002-of-00003.gguf")) == 1, "cached, as a set"

    response = client.delete("/v1/api/delete", json={"model": "big.Q4_K_M"})

    assert response.status_code == 200
    assert response.get_json() == {"status": "deleted", "files": sorted(parts)}
    assert top_level_ggufs(models_dir) == []


def test_split_set_with_a_part_missing_on_the_hub_is_file_not_found(client, hub, models_dir, tmp_path):
    parts = write_split_set(tmp_path, "big.Q4_K_M", 3)
    del parts["big.Q4_K_M-00002-of-00003.gguf"]
    hub.add_repo(REPO, files=parts)

    pull_error(client, 404, "file_not_found", model=REPO)
    assert top_level_ggufs(models_dir) == []


def test_revision_is_pinned_to_the_commit_the_hub_resolved(client, hub, make_gguf, models_dir):
    v1 = make_gguf("v1.gguf", 64 * KiB)
    dev = make_gguf("dev.gguf", 96 * KiB)
    first = hub.add_repo(REPO, files={FILE: v1}, tags={"v1.0": "main"})
    dev_commit = hub.add_commit(REPO, {FILE: dev}, branch="dev")
    hub.add_commit(REPO, {FILE: make_gguf("main2.gguf", 80 * KiB)})  # main moves on; the tag does not

    tagged = pull(client, model=REPO, revision="v1.0")[-1]
    assert tagged["revision"] == first and tagged["sha256"] == sha256_of(v1)
    assert same_bytes(models_dir / FILE, v1)

    branch = pull(client, model=REPO, revision="dev")[-1]
    assert branch["revision"] == dev_commit and branch["sha256"] == sha256_of(dev)
    assert same_bytes(models_dir / FILE, dev)
    record = client.get("/v1/api/models").get_json()["models"][0]
    assert (record["revision"], record["commit"], record["repo"]) == ("dev", dev_commit, REPO)

    by_commit = pull(client, model=REPO, revision=first)[-1]
    assert by_commit["revision"] == first and same_bytes(models_dir / FILE, v1)


def test_files_lists_ggufs_with_sha_quant_split_and_the_recommended_one(client, hub, make_gguf, tmp_path):
    q4, q8 = make_gguf("x.Q4_K_M.gguf"), make_gguf("x.Q8_0.gguf")
    parts = write_split_set(tmp_path, "x.F16", 2)
    commit = hub.add_repo(REPO, files={"x.Q4_K_M.gguf": q4, "x.Q8_0.gguf": q8, **parts, "README.md": b"hi"})
    hub.add_commit(REPO, {"x.Q4_K_M.gguf": None}, branch="small")

    listing = client.get(f"/v1/api/files?model={REPO}").get_json()

    assert (listing["model"], listing["revision"], listing["recommended"]) == (REPO, "main", "x.Q4_K_M.gguf")
    assert listing["commit"] == commit
    by_name = {f["filename"]: f for f in listing["files"]}
    assert set(by_name) == {"x.Q4_K_M.gguf", "x.Q8_0.gguf", *parts}, "only GGUF files"
    assert by_name["x.Q8_0.gguf"] == {"filename": "x.Q8_0.gguf", "size": q8.stat().st_size,
                                      "sha256": sha256_of(q8), "quant": "Q8_0", "split": None}
    assert by_name["x.F16-00002-of-00002.gguf"]["split"] == {"index": 2, "count": 2}
    assert by_name["x.F16-00002-of-00002.gguf"]["quant"] == "F16"
    small = client.get(f"/v1/api/files?model={REPO}&revision=small").get_json()
    assert small["revision"] == "small" and small["recommended"] == "x.Q8_0.gguf"
    assert client.get("/v1/api/files?model=acme/absent").status_code == 404
    assert client.get("/v1/api/files?model=not-a-repo").get_json()["code"] == "invalid_repo_id"


# --- installed models -----------------------------------------------------------------------------


def test_pulled_model_is_listed_at_once_with_provenance_and_delete_removes_it(client, hub, make_gguf, models_dir):
    source = make_gguf(FILE, 128 * KiB)
    commit = hub.add_repo(REPO, files={FILE: source})
    pull(client, model=REPO)

    assert [m["id"] for m in client.get("/v1/models").get_json()["data"]] == ["tiny.Q4_K_M"]
    record = client.get("/v1/api/models").get_json()["models"][0]
    assert record["filename"] == FILE and record["id"] == "tiny.Q4_K_M" and record["intact"] is True
    assert (record["repo"], record["commit"], record["size"]) == (REPO, commit, source.stat().st_size)
    assert record["sha256"] == sha256_of(source) and record["source_host"] == hub.url.removeprefix("http://") and record["pulled_at"]

    response = client.delete("/v1/api/delete", json={"model": "tiny"})  # the id without its quant works too

    assert response.status_code == 200
    assert response.get_json() == {"status": "deleted", "files": [FILE]}
    assert top_level_ggufs(models_dir) == [] and client.get("/v1/api/models").get_json()["models"] == []
    response = client.delete("/v1/api/delete", json={"filename": FILE})
    assert response.status_code == 404 and response.get_json()["code"] == "model_not_found"


def test_delete_by_repo_removes_every_file_pulled_from_it(client, hub, make_gguf, models_dir):
    hub.add_repo(REPO, files={"m.Q4_K_M.gguf": make_gguf("a.gguf"), "m.Q8_0.gguf": make_gguf("b.gguf")})
    hub.add_repo("other/m-GGUF", files={"o.Q4_K_M.gguf": make_gguf("c.gguf")})
    for body in ({"model": REPO}, {"model": REPO, "quant": "Q8_0"}, {"model": "other/m-GGUF"}):
        pull(client, **body)

    response = client.delete("/v1/api/delete", json={"model": REPO})

    assert response.get_json() == {"status": "deleted", "files": ["m.Q4_K_M.gguf", "m.Q8_0.gguf"]}
    assert top_level_ggufs(models_dir) == ["o.Q4_K_M.gguf"]


def test_nothing_appears_under_the_final_name_before_every_check_passed(make_app, hub, make_gguf, models_dir):
    source = make_gguf(FILE, 1 * MiB)
    hub.add_repo(REPO, files={FILE: source})
    hub.faults.add(Fault.stall(after_bytes=200 * KiB, seconds=0.4), file=FILE)
    client = make_app(pull_connections=1, pull_chunk_bytes=4 * MiB, pull_stall_timeout_s=5).test_client()
    stream = open_stream(client, model=REPO)

    stream.until(lambda event: event["status"] == "downloading" and event["completed"] >= 200 * KiB)

    assert top_level_ggufs(models_dir) == []
    assert staging_files(models_dir) == [FILE + ".partial", FILE + ".partial.json"]
    assert stream.rest()[-1]["status"] == "complete"
    assert top_level_ggufs(models_dir) == [FILE] and staging_files(models_dir) == []


# --- the HF token stays secret ----------------------------------------------------------------------


def test_hf_token_never_reaches_logs_responses_or_the_cdn(make_app, hub, make_gguf, models_dir, caplog):
    caplog.set_level(logging.DEBUG)
    hub.add_repo(REPO, files={FILE: make_gguf(FILE, 512 * KiB)}, private=True, readers={TOKEN})
    hub.add_repo("acme/gated-GGUF", files={"g.Q4_K_M.gguf": make_gguf("g.gguf")}, gated=True, approved={TOKEN})
    hub.faults.add(Fault.drop(after_bytes=10 * KiB), file=FILE)
    client = make_app(hf_token=TOKEN).test_client()
    answers = []

    for body in ({"model": REPO}, {"model": "acme/gated-GGUF"}, {"model": REPO, "filename": "absent.gguf"},
                 {"model": REPO, "revision": "nope"}):
        answers.append(client.post("/v1/api/pull", json=body).get_data(as_text=True))
    for path in ("/", "/v1/api/pulls", "/v1/api/models", f"/v1/api/files?model={REPO}", "/v1/models",
                 "/metrics", "/openapi.json", "/v1/health"):
        answers.append(client.get(path).get_data(as_text=True))

    assert json.loads(answers[0].splitlines()[-1])["status"] == "complete"
    assert json.loads(answers[1].splitlines()[-1])["status"] == "complete"
    assert not [a for a in answers if TOKEN in a]
    assert TOKEN not in caplog.text and TOKEN[3:] not in caplog.text
    cdn = hub.requests_to("/cdn-lfs/")
    assert cdn and not any(r.authorization for r in cdn), "the CDN never sees the Authorization header"
    resolve = [r for r in hub.requests() if r.place == "resolve"]
    assert resolve and all(r.authorization for r in resolve), "the Hub itself gets the token"


def test_a_file_copied_in_by_hand_is_hashed_and_adopted_instead_of_downloaded(client, hub, make_gguf, models_dir):
    source = make_gguf(FILE, 512 * KiB)
    hub.add_repo(REPO, files={FILE: source})
    models_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, models_dir / FILE)
    events = pull(client, model=REPO)
    assert "verifying" in statuses(events) and events[-1]["status"] == "complete", events[-2:]
    assert content_gets(hub, REPO, FILE) == []  # not one byte fetched
    record = next(m for m in client.get("/v1/api/models").get_json()["models"] if m["filename"] == FILE)
    assert record["repo"] == REPO and record["sha256"] == hub.blob(REPO, FILE).sha256 and record["intact"]


def test_a_different_file_under_the_same_name_is_replaced_by_the_hubs(client, hub, make_gguf, models_dir):
    source = make_gguf(FILE, 512 * KiB)
    hub.add_repo(REPO, files={FILE: source})
    models_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(make_gguf("other.gguf", 512 * KiB), models_dir / FILE)  # same size, other bytes
    assert pull(client, model=REPO)[-1]["status"] == "complete"
    assert content_gets(hub, REPO, FILE) != []
    assert same_bytes(models_dir / FILE, source)
