"""GET /v1/api/files: it obeys ALLOWED_REPOS as a pull does, and its memory does not grow with the size of
the repo it lists (measured on a real gunicorn proxy listing a 100k-file repo four times at once)."""
from __future__ import annotations

import threading
from pathlib import Path

import requests

from tests.proxy_processes import proxy_process
from tests.pull_fixtures import MiB, REPO

HUGE_REPO = "acme/huge-GGUF"
HUGE_FILES = 100_000
GGUFS = {"m.Q4_K_M.gguf": b"GGUF q4", "m.Q8_0.gguf": b"GGUF q8"}
LISTINGS = 4  # at once (ten: +598 MiB before paging the tree, +11 MiB after)
MAX_GROWTH_BYTES = 48 * MiB  # before paging the tree, four listings grew it by about 250 MiB


def test_files_of_a_repo_outside_allowed_repos_is_repo_not_allowed(make_app, hub, make_gguf):
    hub.add_repo("other/model-GGUF", files={"m.Q4_K_M.gguf": make_gguf("m.Q4_K_M.gguf")})
    hub.add_repo(REPO, files={"m.Q4_K_M.gguf": make_gguf("x.gguf")})
    client = make_app(allowed_repos=("ACME/*",)).test_client()

    response = client.get("/v1/api/files?model=other/model-GGUF")

    assert response.status_code == 403 and response.get_json()["code"] == "repo_not_allowed", response.get_json()
    assert hub.requests_to("/api/models/other") == [], "refused before asking the Hub"
    assert client.get(f"/v1/api/files?model={REPO}").get_json()["recommended"] == "m.Q4_K_M.gguf"


def peak_rss_bytes(pid: int) -> int:
    """The process's resident set high-water mark (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc")


def worker_pid(master_pid: int) -> int:
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def test_listings_of_a_100k_file_repo_at_once_keep_memory_flat(hub, models_dir, tmp_path):
    others = {f"row-{i:06d}.json": b"{}" for i in range(HUGE_FILES - len(GGUFS))}
    hub.add_repo(HUGE_REPO, files={**GGUFS, **others})
    hub.add_repo(REPO, files=GGUFS)
    answers: list[requests.Response] = []

    def list_huge(url: str) -> None:
        answers.append(requests.get(f"{url}/v1/api/files", params={"model": HUGE_REPO}, timeout=120))

    with proxy_process(models_dir, hub, tmp_path / "proxy.log") as proxy:
        worker = worker_pid(proxy.proc.pid)
        assert requests.get(f"{proxy.url}/v1/api/files", params={"model": REPO}, timeout=30).status_code == 200
        before = peak_rss_bytes(worker)
        threads = [threading.Thread(target=list_huge, args=(proxy.url,)) for _ in range(LISTINGS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(180)
        growth = peak_rss_bytes(worker) - before

    print(f"peak RSS of the proxy worker: {before / MiB:.0f} MiB before, +{growth / MiB:.0f} MiB "
          f"under {LISTINGS} listings of {HUGE_FILES} files")
    assert len(answers) == LISTINGS and all(a.status_code == 200 for a in answers), [a.text[:200] for a in answers]
    assert all(sorted(f["filename"] for f in a.json()["files"]) == sorted(GGUFS) for a in answers)
    assert growth < MAX_GROWTH_BYTES, f"grew by {growth / MiB:.0f} MiB"
