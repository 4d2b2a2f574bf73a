"""Three proxy processes (gunicorn) on one MODELS_DIR, as replicas on a ReadWriteMany volume: pulls of
different files at once never answer 500 nor lose a provenance record.
"""
from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
import requests

from tests.fakes.hub import FakeHub
from tests.pull_fixtures import TOKEN, KiB
from tests.test_proxy_process import Proxy, proxy_process

REPLICAS = 3
ROUNDS = 5
PULLS_PER_REPLICA = 4  # each round: 12 pulls at once, all running (PULL_CONCURRENCY), installing together
SHARED_REPO = "acme/many-GGUF"


@dataclass
class Replicas:
    hub: FakeHub
    models_dir: Path
    proxies: list[Proxy]


@pytest.fixture(scope="module")
def replicas(tmp_path_factory) -> Iterator[Replicas]:
    """A fake Hub and REPLICAS gunicorn proxies on one MODELS_DIR, shared by this module's tests (starting
    the processes is most of a test's time); each test pulls names of its own."""
    folder = tmp_path_factory.mktemp("replicas")
    env = {"PULL_CONCURRENCY": str(PULLS_PER_REPLICA), "PULL_CONNECTIONS": "1"}
    with FakeHub(tokens={TOKEN}) as hub, contextlib.ExitStack() as stack:
        proxies = [stack.enter_context(proxy_process(folder / "models", hub, folder / f"replica-{index}.log", **env))
                   for index in range(REPLICAS)]
        yield Replicas(hub, folder / "models", proxies)


def pull_final(proxy: Proxy, **body) -> tuple[int, dict]:
    """A `stream: false` pull: its HTTP status and final object."""
    response = requests.post(f"{proxy.url}/v1/api/pull", json={**body, "stream": False}, timeout=60)
    return response.status_code, response.json()


def installed(proxy: Proxy) -> dict[str, dict]:
    models = requests.get(f"{proxy.url}/v1/api/models", timeout=10).json()["models"]
    return {model["filename"]: model for model in models}


def test_replicas_pulling_different_files_at_once_never_answer_500_nor_lose_records(replicas, make_gguf):
    names = [f"r{r}-p{p}-{i}.Q4_K_M.gguf" for r in range(ROUNDS) for p in range(REPLICAS)
             for i in range(PULLS_PER_REPLICA)]
    replicas.hub.add_repo(SHARED_REPO, files={name: make_gguf(name, 16 * KiB) for name in names})
    proxies, failed, lost = replicas.proxies, [], []

    with ThreadPoolExecutor(REPLICAS * PULLS_PER_REPLICA) as pool:
        for round_ in range(ROUNDS):
            batch = [(proxies[p], f"r{round_}-p{p}-{i}.Q4_K_M.gguf") for p in range(REPLICAS)
                     for i in range(PULLS_PER_REPLICA)]
            answers = pool.map(lambda job: pull_final(job[0], model=SHARED_REPO, filename=job[1]), batch)
            failed += [(name, status, final.get("code")) for (_, name), (status, final) in zip(batch, answers)
                       if status != 200]
            records = installed(proxies[round_ % REPLICAS])
            lost += [name for _, name in batch
                     if records.get(name, {}).get("repo") != SHARED_REPO or not records[name]["intact"]]

    assert (failed, lost) == ([], []), f"{len(failed)} failed pulls, {len(lost)} lost records"

