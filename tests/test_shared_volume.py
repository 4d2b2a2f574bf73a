"""Three proxy processes (gunicorn) on one MODELS_DIR, as replicas on a ReadWriteMany volume: pulls of
different files at once never answer 500 nor lose a provenance record, and a file name installed from one
repo is never silently replaced by another repo's file, not even by two replicas racing.
"""
from __future__ import annotations

import contextlib
import itertools
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
import requests

from tests.fakes.hub import FakeHub
from tests.helpers import unique
from tests.proxy_processes import HttpStream, Proxy, proxy_process
from tests.pull_fixtures import TOKEN, KiB, MiB, same_bytes

REPLICAS = 3
ROUNDS = 5
PULLS_PER_REPLICA = 4  # each round: 12 pulls at once, all running (PULL_CONCURRENCY), installing together


@dataclass
class Replicas:
    hub: FakeHub
    models_dir: Path
    proxies: list[Proxy]


@pytest.fixture(scope="module")
def replicas(tmp_path_factory) -> Iterator[Replicas]:
    """A fake Hub and REPLICAS gunicorn proxies on one MODELS_DIR, shared by this module's tests (starting
    the processes is most of a test's time); each test pulls names of its own, new on every run (`unique`),
    so a repeated test meets neither its earlier runs' repos on the Hub nor their files in MODELS_DIR."""
    folder = tmp_path_factory.mktemp("replicas")
    env = {"PULL_CONCURRENCY": str(PULLS_PER_REPLICA), "PULL_CONNECTIONS": "1"}
    with FakeHub(tokens={TOKEN}) as hub, contextlib.ExitStack() as stack:
        proxies = [stack.enter_context(proxy_process(folder / "models", hub, folder / f"replica-{index}.log", **env))
                   for index in range(REPLICAS)]
        yield Replicas(hub, folder / "models", proxies)


def fresh_seeds() -> Iterator[int]:
    """Seeds for make_gguf that no earlier run used (its default seeds restart at 1 in every test): a repeated
    test's files have bytes of their own."""
    return itertools.count(uuid.uuid4().int >> 80)


def pull_final(proxy: Proxy, **body) -> tuple[int, dict]:
    """A `stream: false` pull: its HTTP status and final object."""
    response = requests.post(f"{proxy.url}/v1/api/pull", json={**body, "stream": False}, timeout=60)
    return response.status_code, response.json()


def installed(proxy: Proxy) -> dict[str, dict]:
    models = requests.get(f"{proxy.url}/v1/api/models", timeout=10).json()["models"]
    return {model["filename"]: model for model in models}


def test_replicas_pulling_different_files_at_once_never_answer_500_nor_lose_records(replicas, make_gguf):
    prefix, seeds = unique("many"), fresh_seeds()
    shared_repo = f"acme/{prefix}-GGUF"
    names = [f"{prefix}-r{r}-p{p}-{i}.Q4_K_M.gguf" for r in range(ROUNDS) for p in range(REPLICAS)
             for i in range(PULLS_PER_REPLICA)]
    replicas.hub.add_repo(shared_repo, files={name: make_gguf(name, 16 * KiB, next(seeds)) for name in names})
    proxies, failed, lost = replicas.proxies, [], []

    with ThreadPoolExecutor(REPLICAS * PULLS_PER_REPLICA) as pool:
        for round_ in range(ROUNDS):
            batch = [(proxies[p], f"{prefix}-r{round_}-p{p}-{i}.Q4_K_M.gguf") for p in range(REPLICAS)
                     for i in range(PULLS_PER_REPLICA)]
            answers = pool.map(lambda job: pull_final(job[0], model=shared_repo, filename=job[1]), batch)
            failed += [(name, status, final.get("code")) for (_, name), (status, final) in zip(batch, answers)
                       if status != 200]
            records = installed(proxies[round_ % REPLICAS])
            lost += [name for _, name in batch
                     if records.get(name, {}).get("repo") != shared_repo or not records[name]["intact"]]

    assert (failed, lost) == ([], []), f"{len(failed)} failed pulls, {len(lost)} lost records"


def test_replicas_racing_for_one_name_from_two_repos_install_one_and_refuse_the_other(replicas, make_gguf):
    hub, models_dir, proxies = replicas.hub, replicas.models_dir, replicas.proxies
    name, seeds = f"{unique('x')}.Q4_K_M.gguf", fresh_seeds()
    sources = {f"{unique('alice/a')}-GGUF": make_gguf("alice.gguf", 1 * MiB, next(seeds)),
               f"{unique('mallory/b')}-GGUF": make_gguf("mallory.gguf", 1 * MiB, next(seeds))}
    for repo, source in sources.items():
        hub.add_repo(repo, files={name: source})
    hub.throttle_bps = 512 * KiB  # 2 s a download: both pulls are planned before either installs

    streams = {repo: HttpStream(proxy, model=repo) for repo, proxy in zip(sources, proxies)}
    finals = {repo: stream.finish()[-1] for repo, stream in streams.items()}
    hub.throttle_bps = None
    completed = [repo for repo, final in finals.items() if final["status"] == "complete"]
    assert len(completed) == 1, f"one of the two installs, the other is refused: {finals}"
    [winner], [loser] = completed, [repo for repo in sources if repo not in completed]
    assert finals[loser]["status"] == "error" and finals[loser]["code"] == "name_conflict", finals[loser]
    assert same_bytes(models_dir / name, sources[winner])

    refused = requests.post(f"{proxies[2].url}/v1/api/pull", json={"model": loser}, timeout=30)
    after_refusal = installed(proxies[2])[name]
    replaced_status, replaced = pull_final(proxies[2], model=loser, replace=True)
    after_replace = installed(proxies[0])[name]

    assert refused.status_code == 409 and refused.json()["code"] == "name_conflict", refused.text
    assert after_refusal["repo"] == winner and after_refusal["intact"]
    assert replaced_status == 200 and replaced["status"] == "complete", replaced
    assert after_replace["repo"] == loser and after_replace["intact"]
    assert same_bytes(models_dir / name, sources[loser])


def test_replicas_pulling_the_same_file_at_the_same_moment_download_it_once(replicas, make_gguf):
    hub, proxies = replicas.hub, replicas.proxies
    repo, name, size = f"{unique('acme/same')}-GGUF", f"{unique('same')}.Q4_K_M.gguf", 2 * MiB
    source = make_gguf(name, size, next(fresh_seeds()))
    hub.add_repo(repo, files={name: source})
    hub.clear_log()
    hub.throttle_bps = 1 * MiB  # two seconds of download: every replica plans before the first installs

    with ThreadPoolExecutor(REPLICAS) as pool:
        answers = list(pool.map(lambda proxy: pull_final(proxy, model=repo, filename=name), proxies))
    hub.throttle_bps = None

    served = hub.bytes_served(hub.cdn_path(repo, name)) + hub.bytes_served(f"/{repo}/resolve/")
    print(f"the fake Hub served {served} bytes of a {size}-byte file to {REPLICAS} replicas on one volume")
    assert size <= served <= 1.05 * size, f"the Hub served {served} bytes of a {size}-byte file"
    assert [(status, final["status"]) for status, final in answers] == [(200, "complete")] * REPLICAS, answers
    assert same_bytes(replicas.models_dir / name, source)
    for proxy in proxies:
        assert installed(proxy)[name]["repo"] == repo and installed(proxy)[name]["intact"], proxy.url
