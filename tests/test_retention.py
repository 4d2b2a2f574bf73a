"""Retention (docs/api.md, Retention): MODELS_MAX_BYTES with least-recently-used eviction, last_used,
MODELS_TTL_DAYS, and week-old quarantine.

The eviction test runs real processes: the proxy under gunicorn, a slow streaming backend
(tests/fakes/backend.py) holding a generation open, and the fake Hub.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import requests

from core import naming
from proxy.models_dir.store import ModelStore
from proxy.services import services_of
from tests.proxy_processes import CHAT, fake_backend, proxy_process, sse_data
from tests.pull_fixtures import (  # noqa: F401 - fixtures
    KiB, hub, make_app, make_gguf, models_dir, pull, pull_error, slow_backend, statuses, top_level_ggufs, wait_until,
)

SIZE = 64 * KiB
BUDGET = 2 * SIZE + SIZE // 2  # two models fit, a third does not
DAY_S = 24 * 3600
NAMES = {"alpha": "alpha.Q4_K_M.gguf", "beta": "beta.Q4_K_M.gguf", "gamma": "gamma.Q4_K_M.gguf"}


def add_models(hub, make_gguf) -> None:
    for key, name in NAMES.items():
        hub.add_repo(f"acme/{key}-GGUF", files={name: make_gguf(name, SIZE)})


def installed_bytes(models_dir: Path) -> int:
    return sum((models_dir / name).stat().st_size for name in top_level_ggufs(models_dir)) + \
        sum(p.stat().st_size for p in (models_dir / ".staging").glob("*"))


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def last_used(client) -> dict[str, str | None]:
    return {m["filename"]: m["last_used"] for m in client.get("/v1/api/models").json["models"]}


def chat(url: str, model: str) -> requests.Response:
    body = {"model": naming.model_id(model), "messages": [{"role": "user", "content": "hi"}], "stream": True}
    return requests.post(url + CHAT, json=body, stream=True, timeout=(5, 30))


# --- evicting to make room -----------------------------------------------------------------------


def test_third_model_evicts_the_least_recently_used_one_not_one_being_generated_from(
        hub, make_gguf, models_dir, tmp_path):
    add_models(hub, make_gguf)
    with fake_backend(tmp_path / "backend.log", events=200, interval_s=0.05) as backend, \
            proxy_process(models_dir, hub, tmp_path / "proxy.log", BACKEND_URL=backend.url,
                          MODELS_MAX_BYTES=str(BUDGET)) as proxy:
        for key in ("alpha", "beta"):
            answer = requests.post(f"{proxy.url}/v1/api/pull", json={"model": f"acme/{key}-GGUF", "stream": False})
            assert answer.status_code == 200, answer.text
        # alpha: generating for 10 s, used first; beta: used a second later, its stream still open.
        alpha = chat(proxy.url, NAMES["alpha"])
        alpha_events = sse_data(alpha)  # kept: a generator collected would close the stream
        next(alpha_events)
        time.sleep(1.1)
        beta = chat(proxy.url, NAMES["beta"])
        beta_events = sse_data(beta)
        next(beta_events)

        refused = requests.post(f"{proxy.url}/v1/api/pull", json={"model": "acme/gamma-GGUF"})
        assert refused.status_code == 507 and refused.json()["code"] == "insufficient_storage", refused.text

        beta_events.close()
        beta.close()  # beta's answer ends; alpha, the least recently used, is still being generated from
        time.sleep(1.0)
        answer = requests.post(f"{proxy.url}/v1/api/pull", json={"model": "acme/gamma-GGUF"})
        lines = [json.loads(line) for line in answer.text.splitlines()]
        metrics = requests.get(f"{proxy.url}/metrics").text
        alpha.close()

    assert lines[-1]["status"] == "complete", lines
    assert {"status": "evicting", "filename": NAMES["beta"]} in lines
    assert statuses(lines).index("evicting") < statuses(lines).index("downloading")
    assert top_level_ggufs(models_dir) == [NAMES["alpha"], NAMES["gamma"]]
    assert installed_bytes(models_dir) <= BUDGET
    assert 'proxy_evictions_total{reason="room"} 1.0' in metrics
    assert f"evicted {naming.model_id(NAMES['beta'])}" in (tmp_path / "proxy.log").read_text()
    # The shutdown wrote the times the last interval had not written yet.
    flushed = json.loads((models_dir / ".proxy" / "last_used.json").read_text())["last_used"]
    assert set(flushed) == {NAMES["alpha"], NAMES["gamma"]}


def test_a_protected_model_is_not_evicted_and_with_nothing_evictable_the_pull_is_507(make_app, hub, make_gguf,
                                                                                      models_dir):
    add_models(hub, make_gguf)
    app = make_app(models_max_bytes=BUDGET)
    client = app.test_client()
    for key in ("alpha", "beta"):
        assert pull(client, model=f"acme/{key}-GGUF")[-1]["status"] == "complete"
    retention = services_of(app).retention

    retention.protected = lambda filename: True  # every model declared
    pull_error(client, 507, "insufficient_storage", model="acme/gamma-GGUF")
    assert top_level_ggufs(models_dir) == [NAMES["alpha"], NAMES["beta"]]

    retention.protected = lambda filename: filename == NAMES["alpha"]  # alpha, the least recently used, declared
    lines = pull(client, model="acme/gamma-GGUF")

    evicting = [line for line in lines if line["status"] == "evicting"]
    assert evicting == [{"status": "evicting", "filename": NAMES["beta"]}]
    assert top_level_ggufs(models_dir) == [NAMES["alpha"], NAMES["gamma"]]
    assert installed_bytes(models_dir) <= BUDGET


# --- last_used ---------------------------------------------------------------------------------------


def test_last_used_follows_a_generate_and_survives_the_batching(make_app, hub, make_gguf, models_dir):
    add_models(hub, make_gguf)
    with slow_backend(0.0) as backend_url:
        app = make_app(backend_url=backend_url, last_used_flush_interval_s=3600)
        client = app.test_client()
        pull(client, model="acme/alpha-GGUF")
        pull(client, model="acme/beta-GGUF")
        before = last_used(client)
        time.sleep(1.1)  # to the second: a later second
        body = {"model": naming.model_id(NAMES["alpha"]), "prompt": "hi"}
        assert client.post("/v1/generate", json=body).status_code == 200

        after = last_used(client)
        assert after[NAMES["alpha"]] > before[NAMES["alpha"]] and after[NAMES["beta"]] == before[NAMES["beta"]]
        assert after[NAMES["alpha"]].endswith("+00:00") and "." not in after[NAMES["alpha"]]
        flushed = models_dir / ".proxy" / "last_used.json"
        assert not flushed.exists(), "no write a request: batched until the flush"

        services_of(app).usage.flush()
        restarted = make_app(backend_url=backend_url).test_client()
        assert last_used(restarted) == after


def test_a_cached_pull_counts_as_a_use(make_app, hub, make_gguf):
    add_models(hub, make_gguf)
    client = make_app().test_client()
    pull(client, model="acme/alpha-GGUF")
    first = last_used(client)[NAMES["alpha"]]
    time.sleep(1.1)
    assert pull(client, model="acme/alpha-GGUF")[-1].get("cached") is True
    assert last_used(client)[NAMES["alpha"]] > first


# --- TTL and leftovers -------------------------------------------------------------------------------


def test_a_model_unused_for_the_ttl_is_evicted_at_start(make_app, hub, make_gguf, models_dir):
    add_models(hub, make_gguf)
    app = make_app()
    client = app.test_client()
    pull(client, model="acme/alpha-GGUF")
    pull(client, model="acme/beta-GGUF")
    services_of(app).usage.flush()
    age_last_used(models_dir, NAMES["alpha"], 3 * DAY_S)

    make_app(models_ttl_days=2)

    assert top_level_ggufs(models_dir) == [NAMES["beta"]]


def test_a_model_past_the_ttl_is_evicted_by_the_hourly_sweep(make_app, hub, make_gguf, models_dir):
    add_models(hub, make_gguf)
    first = make_app()
    pull(first.test_client(), model="acme/alpha-GGUF")
    services_of(first).usage.flush()
    make_app(models_ttl_days=1, staging_sweep_interval_s=0.05)  # its first sweep runs before it returns
    assert top_level_ggufs(models_dir) == [NAMES["alpha"]], "used just now: kept"

    age_last_used(models_dir, NAMES["alpha"], 2 * DAY_S)  # as if two days passed

    wait_until(lambda: top_level_ggufs(models_dir) == [], 5, "the hourly sweep")


def age_last_used(models_dir: Path, filename: str, seconds: float) -> None:
    path = models_dir / ".proxy" / "last_used.json"
    times = json.loads(path.read_text())
    times["last_used"][filename] -= seconds
    path.write_text(json.dumps(times))


def test_quarantine_older_than_a_week_is_removed_at_start_younger_kept(make_app, models_dir):
    store = ModelStore(models_dir)
    store.ensure_dirs()
    (models_dir / "fresh.gguf").write_bytes(b"x" * 100)
    age(models_dir / "fresh.gguf", 30 * DAY_S)  # downloaded long ago, quarantined just now
    store.quarantine(["fresh.gguf"])
    for name, days in (("old.gguf", 8), ("young.gguf", 6)):
        path = models_dir / ".quarantine" / name
        path.write_bytes(b"x" * 100)
        age(path, days * DAY_S)

    make_app()

    assert sorted(p.name for p in (models_dir / ".quarantine").iterdir()) == ["fresh.gguf", "young.gguf"]


def test_a_declared_model_is_never_evicted(tmp_path):
    """The app wires the manifest's declared files into retention's protection."""
    from proxy.app import build_services
    from proxy.settings import Settings

    manifest = tmp_path / "models.yaml"
    manifest.write_text("models:\n  - model: acme/declared-GGUF\n    filename: declared.Q4_K_M.gguf\n")
    models = tmp_path / "models"
    services = build_services(Settings(models_dir=str(models), models_manifest=str(manifest),
                                       backend_url="http://127.0.0.1:9", hf_endpoint="http://127.0.0.1:9"))
    assert services.retention.protected("declared.Q4_K_M.gguf")
    assert not services.retention.protected("other.Q4_K_M.gguf")


# --- running pulls ---------------------------------------------------------------------------------

THROTTLE_BPS = 16 * KiB  # a 64 KiB file takes about 4 s: long enough to act while it is pulled


def start_async(client, model: str) -> str:
    answer = client.post("/v1/api/pull", json={"model": model, "async": True})
    assert answer.status_code == 202, answer.get_data(as_text=True)
    return answer.json["id"]


def pull_status(client, pull_id: str) -> dict:
    return client.get(f"/v1/api/pulls/{pull_id}").json


def test_a_model_being_pulled_is_not_evicted_when_another_pull_needs_room(make_app, hub, make_gguf, models_dir):
    add_models(hub, make_gguf)
    app = make_app(models_max_bytes=3 * SIZE + SIZE // 2)
    client = app.test_client()
    for key in ("alpha", "beta"):  # alpha first: the least recently used
        assert pull(client, model=f"acme/{key}-GGUF")[-1]["status"] == "complete"
    hub.add_commit("acme/alpha-GGUF", {NAMES["alpha"]: make_gguf(NAMES["alpha"], SIZE, seed=7)})
    hub.throttle_bps = THROTTLE_BPS
    updating = start_async(client, "acme/alpha-GGUF")  # alpha's new bytes, held open by the throttle
    wait_until(lambda: pull_status(client, updating)["status"] == "downloading", what="alpha downloading")

    lines = pull(client, model="acme/gamma-GGUF")

    assert [line for line in lines if line["status"] == "evicting"] == \
        [{"status": "evicting", "filename": NAMES["beta"]}]  # not alpha, though used least recently
    hub.throttle_bps = None
    wait_until(lambda: pull_status(client, updating)["status"] == "complete", timeout_s=30, what="alpha updated")
    assert top_level_ggufs(models_dir) == [NAMES["alpha"], NAMES["gamma"]]


def test_two_pulls_admitted_at_once_cannot_together_exceed_the_budget(make_app, hub, make_gguf, models_dir):
    add_models(hub, make_gguf)
    client = make_app(models_max_bytes=BUDGET).test_client()  # room for two models, not three
    hub.throttle_bps = THROTTLE_BPS
    running = [start_async(client, f"acme/{key}-GGUF") for key in ("alpha", "beta")]

    # Neither has written much yet: without reserving their bytes, gamma would be admitted too.
    pull_error(client, 507, "insufficient_storage", model="acme/gamma-GGUF")

    hub.throttle_bps = None
    for pull_id in running:
        wait_until(lambda: pull_status(client, pull_id)["status"] == "complete", timeout_s=30, what="pulls")
    assert top_level_ggufs(models_dir) == [NAMES["alpha"], NAMES["beta"]]
    assert installed_bytes(models_dir) <= BUDGET


def test_a_model_being_pushed_is_not_counted_on_so_no_other_model_is_evicted_in_vain(make_app, hub, make_gguf,
                                                                                      models_dir):
    """Room for a pull would take evicting both models, but one is held (a push reads it): nothing is evicted,
    the pull is 507, both stay."""
    add_models(hub, make_gguf)
    hub.add_repo("acme/delta-GGUF", files={"delta.Q4_K_M.gguf": make_gguf("delta.Q4_K_M.gguf", 2 * SIZE)})
    app = make_app(models_max_bytes=BUDGET)
    client = app.test_client()
    for key in ("alpha", "beta"):
        assert pull(client, model=f"acme/{key}-GGUF")[-1]["status"] == "complete"
    store = services_of(app).store
    with store.lock(NAMES["alpha"], shared=True):  # as a push holds it
        pull_error(client, 507, "insufficient_storage", model="acme/delta-GGUF")
        assert top_level_ggufs(models_dir) == [NAMES["alpha"], NAMES["beta"]]
    lines = pull(client, model="acme/delta-GGUF")
    assert lines[-1]["status"] == "complete", lines[-1]
    assert top_level_ggufs(models_dir) == ["delta.Q4_K_M.gguf"]


def test_the_prompt_cache_counts_against_the_budget_and_goes_before_any_model(make_app, hub, make_gguf, models_dir):
    add_models(hub, make_gguf)
    app = make_app(models_max_bytes=BUDGET)
    client = app.test_client()
    assert pull(client, model="acme/alpha-GGUF")[-1]["status"] == "complete"
    cache = models_dir / ".prompt-cache" / "0123"  # what the backend writes (server/engine/prompt_cache_disk.py)
    cache.mkdir(parents=True)
    for i in range(3):
        (cache / f"entry{i}.kv").write_bytes(b"k" * (SIZE // 2))
        age(cache / f"entry{i}.kv", 100 - i)
    assert services_of(app).retention.used_bytes() == BUDGET  # nothing left for beta

    lines = pull(client, model="acme/beta-GGUF")
    assert lines[-1]["status"] == "complete"
    assert not [line for line in lines if line["status"] == "evicting"]
    assert [p.name for p in cache.glob("*.kv")] == ["entry2.kv"]  # the least recently used went, as needed
    assert top_level_ggufs(models_dir) == [NAMES["alpha"], NAMES["beta"]]
