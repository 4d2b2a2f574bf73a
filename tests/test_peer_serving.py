"""A proxy serves the Hub files it holds with the Hub's protocol: huggingface_hub downloads from it unchanged,
Range resumes, what it lacks is the Hub's 404, and token-pulled gated files need PROXY_API_KEY."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import requests
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

from proxy.app import create_app
from proxy.services import services_of
from tests.helpers import serving, wait_served
from tests.pull_fixtures import (  # noqa: F401
    REPO, TOKEN, KiB, hub, make_app, make_gguf, models_dir, proxy_settings, pull,
)

FILE = "tiny.Q4_K_M.gguf"
KEY = "proxy-key-for-peers"


def test_hf_hub_download_from_the_proxy_gets_the_installed_bytes(make_app, hub, make_gguf, tmp_path):
    source = make_gguf(FILE, 300 * KiB)
    hub.add_repo(REPO, files={FILE: source})
    app = make_app()
    assert pull(app.test_client(), model=REPO)[-1]["status"] == "complete"
    commit = hub.commit_sha(REPO)
    with serving(app) as url:
        for revision in ("main", commit):
            got = hf_hub_download(REPO, FILE, revision=revision, endpoint=url, cache_dir=tmp_path / revision,
                                  token=False)
            assert Path(got).read_bytes() == source.read_bytes()
        info = requests.get(f"{url}/api/models/{REPO}/revision/main", timeout=5).json()
        assert info["sha"] == commit
        assert info["siblings"] == [{"rfilename": FILE, "size": 300 * KiB, "lfs": {
            "sha256": hashlib.sha256(source.read_bytes()).hexdigest(), "size": 300 * KiB, "pointerSize": 134}}]


def test_a_cut_download_resumes_with_range(make_app, hub, make_gguf, tmp_path):
    source = make_gguf(FILE, 300 * KiB)
    data = source.read_bytes()
    hub.add_repo(REPO, files={FILE: source})
    app = make_app()
    pull(app.test_client(), model=REPO)
    sha = hashlib.sha256(data).hexdigest()
    with serving(app) as url:
        resolve = f"{url}/{REPO}/resolve/main/{FILE}"
        head = requests.head(resolve, timeout=5)
        assert head.headers["X-Linked-Etag"] == f'"{sha}"' and head.headers["ETag"] == f'"{sha}"'
        assert head.headers["X-Linked-Size"] == str(len(data)) and head.headers["Accept-Ranges"] == "bytes"
        assert head.headers["X-Repo-Commit"] == hub.commit_sha(REPO)
        part = requests.get(resolve, headers={"Range": "bytes=1000-"}, timeout=5)
        assert part.status_code == 206 and part.content == data[1000:]
        # huggingface_hub's own resume: a partial .incomplete blob in its cache is continued with Range.
        cache = tmp_path / "cache"
        blobs = cache / f"models--{REPO.replace('/', '--')}" / "blobs"
        blobs.mkdir(parents=True)
        (blobs / f"{sha}.incomplete").write_bytes(data[:100 * KiB])
        hub_log_before = len(hub.requests())
        got = hf_hub_download(REPO, FILE, endpoint=url, cache_dir=cache, token=False)
        assert Path(got).read_bytes() == data
        assert len(hub.requests()) == hub_log_before, "the Hub is not asked"


def test_what_the_proxy_does_not_hold_is_the_hubs_404(make_app, hub, make_gguf, tmp_path):
    hub.add_repo(REPO, files={FILE: make_gguf(FILE)})
    app = make_app()
    pull(app.test_client(), model=REPO)
    with serving(app) as url:
        cases = [(f"/{REPO}/resolve/main/other.gguf", "EntryNotFound"),
                 (f"/acme/absent/resolve/main/{FILE}", "RepoNotFound"),
                 (f"/{REPO}/resolve/{'0' * 40}/{FILE}", "RepoNotFound"),
                 (f"/{REPO}/resolve/main/..%2F..%2Fetc%2Fpasswd", "EntryNotFound"),
                 ("/api/models/acme/absent", "RepoNotFound")]
        for path, code in cases:
            response = requests.get(url + path, timeout=5)
            assert response.status_code == 404 and response.headers["X-Error-Code"] == code, path
            assert response.json()["status"] == "error"
        with pytest.raises(EntryNotFoundError):
            hf_hub_download(REPO, "other.gguf", endpoint=url, cache_dir=tmp_path, token=False)
        with pytest.raises(RepositoryNotFoundError):
            hf_hub_download("acme/absent", FILE, endpoint=url, cache_dir=tmp_path, token=False)


@pytest.mark.parametrize("api_key", [KEY, None])
def test_a_gated_file_pulled_with_a_token_is_served_only_with_the_api_key(make_app, hub, make_gguf, api_key):
    hub.add_repo(REPO, files={FILE: make_gguf(FILE)}, gated="manual", approved={TOKEN})
    app = make_app(hf_token=TOKEN, api_key=api_key)
    bearer = {"Authorization": f"Bearer {KEY}"}
    assert pull(app.test_client(), headers=bearer, model=REPO)[-1]["status"] == "complete"
    assert services_of(app).store.provenance.get(FILE).restricted
    with serving(app) as url:
        resolve, info = f"{url}/{REPO}/resolve/main/{FILE}", f"{url}/api/models/{REPO}"
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            assert requests.get(resolve, headers=headers, timeout=5).status_code == 404
            assert requests.get(info, headers=headers, timeout=5).status_code == 404
        with_key = requests.get(resolve, headers=bearer, timeout=5)
        assert with_key.status_code == (200 if api_key else 404), "never served while PROXY_API_KEY is unset"


def test_pull_through_pulls_what_a_peer_asks_for_and_answers_503_until_installed(make_app, hub, make_gguf):
    source = make_gguf(FILE, 512 * KiB)
    commit = hub.add_repo(REPO, files={FILE: source})
    hub.add_repo("other/elsewhere", files={FILE: source})
    app = make_app(mirror_pull_through=True, allowed_repos=(REPO,))
    with serving(app) as url:
        info = requests.get(f"{url}/api/models/{REPO}/revision/{commit}", timeout=10)
        assert info.status_code == 200, "a repo it does not hold: listed from upstream"
        assert info.json()["sha"] == commit
        assert [s["rfilename"] for s in info.json()["siblings"]] == [FILE]
        assert info.json()["siblings"][0]["lfs"]["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
        assert hub.bytes_served(hub.cdn_path(REPO, FILE)) == 0, "listing only"

        hub.throttle_bps = 256 * KiB  # two seconds of pulling: the first answers are 503
        first = requests.get(f"{url}/{REPO}/resolve/{commit}/{FILE}", timeout=10)
        assert first.status_code == 503 and first.headers["Retry-After"].isdigit(), first.text
        served = wait_served(f"{url}/{REPO}/resolve/{commit}/{FILE}")
        hub.throttle_bps = None
        assert served.status_code == 200 and served.content == source.read_bytes()
        assert served.headers["X-Repo-Commit"] == commit

        missing = wait_served(f"{url}/{REPO}/resolve/{commit}/absent.gguf")  # a miss plans off the request: 503 first
        assert missing.status_code == 404 and missing.headers["X-Error-Code"] == "EntryNotFound"
        outside = requests.get(f"{url}/other/elsewhere/resolve/main/{FILE}", timeout=10)
        assert outside.status_code == 404 and outside.headers["X-Error-Code"] == "RepoNotFound", "ALLOWED_REPOS"
        assert requests.get(f"{url}/api/models/other/elsewhere", timeout=10).status_code == 404
    assert hub.bytes_served(hub.cdn_path("other/elsewhere", FILE)) == 0


@pytest.mark.parametrize("api_key", [KEY, None])
def test_pull_through_of_a_gated_file_only_for_the_api_key(make_app, hub, make_gguf, api_key):
    hub.add_repo(REPO, files={FILE: make_gguf(FILE)}, gated="manual", approved={TOKEN})
    app = make_app(hf_token=TOKEN, api_key=api_key, mirror_pull_through=True)
    bearer = {"Authorization": f"Bearer {KEY}"}
    with serving(app) as url:
        resolve, info = f"{url}/{REPO}/resolve/main/{FILE}", f"{url}/api/models/{REPO}"
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            assert requests.get(info, headers=headers, timeout=10).status_code == 404
            assert wait_served(resolve, headers).status_code == 404
        assert hub.bytes_served(hub.cdn_path(REPO, FILE)) == 0, "nothing pulled for who may not have it"
        with_key = wait_served(resolve, bearer)
        assert with_key.status_code == (200 if api_key else 404), "never served while PROXY_API_KEY is unset"
        assert requests.get(info, headers=bearer, timeout=10).status_code == (200 if api_key else 404)


def test_hf_hub_download_through_an_empty_pull_through_proxy_waits_for_its_pull(make_app, hub, make_gguf, tmp_path):
    """huggingface_hub pointed at a pull-through proxy that lacks the file: it waits out the 503s (Retry-After)
    while the proxy pulls, then gets the Hub's bytes, which the Hub served once."""
    source = make_gguf(FILE, 512 * KiB)
    hub.add_repo(REPO, files={FILE: source})
    app = make_app(mirror_pull_through=True)
    hub.throttle_bps = 256 * KiB  # about two seconds of pulling
    with serving(app) as url:
        got = hf_hub_download(REPO, FILE, endpoint=url, cache_dir=tmp_path / "cache", token=False)
    assert Path(got).read_bytes() == source.read_bytes()
    assert hub.bytes_served(hub.cdn_path(REPO, FILE)) == 512 * KiB


@pytest.mark.parametrize("b_key", [KEY, "another-fleets-key", None])
def test_a_peer_sharing_the_api_key_gets_a_gated_file_from_its_mirror_and_keeps_it_restricted(
        make_app, hub, make_gguf, tmp_path, b_key):
    """B lists A in HF_MIRRORS and has no HF_TOKEN: with A's PROXY_API_KEY as its MIRROR_API_KEY it gets the gated file A pulled with
    its token (no byte from the Hub's CDN) and serves it on only with the key; without it, B gets nothing."""
    source = make_gguf(FILE, 256 * KiB)
    hub.add_repo(REPO, files={FILE: source}, gated="manual", approved={TOKEN})
    a = make_app(hf_token=TOKEN, api_key=KEY)
    assert pull(a.test_client(), headers={"Authorization": f"Bearer {KEY}"}, model=REPO)[-1]["status"] == "complete"
    hub.clear_log()
    with serving(a) as a_url:
        # B shows its mirrors MIRROR_API_KEY (the fleet's key), and guards what it serves with its PROXY_API_KEY.
        b = create_app(proxy_settings(tmp_path / "b", hub.url, hf_mirrors=(a_url,), api_key=b_key,
                                      mirror_api_key=b_key))
        try:
            headers = {"Authorization": f"Bearer {b_key}"} if b_key else {}
            if b_key != KEY:  # A hides the file from B: B's own answer is the Hub's, before any byte
                refused = b.test_client().post("/v1/api/pull", json={"model": REPO, "filename": FILE},
                                               headers=headers)
                assert (refused.status_code, refused.get_json()["code"]) == (403, "gated_repo"), refused.get_json()
                assert not (tmp_path / "b" / FILE).exists()
                return
            final = pull(b.test_client(), headers=headers, model=REPO, filename=FILE)[-1]
            assert final["status"] == "complete", final
            assert final["source_host"] == a_url.removeprefix("http://")
            assert hub.bytes_served(hub.cdn_path(REPO, FILE)) == 0
            assert (tmp_path / "b" / FILE).read_bytes() == source.read_bytes()
            assert services_of(b).store.provenance.get(FILE).restricted, "B hands it out only with the key"
            with serving(b) as b_url:
                resolve = f"{b_url}/{REPO}/resolve/main/{FILE}"
                assert requests.get(resolve, timeout=5).status_code == 404
                assert requests.get(resolve, headers={"Authorization": f"Bearer {KEY}"}, timeout=5).status_code == 200
        finally:
            services_of(b).reconciler.stop()
            services_of(b).pulls.shutdown()


def test_llama_cpp_hf_requests_find_mains_commit_its_tree_and_the_bytes(make_app, hub, make_gguf):
    """The three requests llama.cpp's `-hf` makes with HF_ENDPOINT=<proxy> (common/hf-cache.cpp of the llama.cpp
    that llama-cpp-python vendors): refs for main's commit (40 hex), the tree at that commit (files with an lfs
    oid), then resolve at that commit."""
    source = make_gguf(FILE, 300 * KiB)
    commit = hub.add_repo(REPO, files={FILE: source})
    app = make_app()
    assert pull(app.test_client(), model=REPO)[-1]["status"] == "complete"
    with serving(app) as url:
        endpoint = url + "/"
        refs = requests.get(f"{endpoint}api/models/{REPO}/refs", headers={"Accept": "application/json"}, timeout=5)
        assert refs.status_code == 200
        main = [b for b in refs.json()["branches"] if b["name"] == "main"]
        assert [b["targetCommit"] for b in main] == [commit] and len(commit) == 40
        tree = requests.get(f"{endpoint}api/models/{REPO}/tree/{commit}?recursive=true", timeout=5).json()
        files = [item for item in tree if item["type"] == "file"]
        sha256 = hashlib.sha256(source.read_bytes()).hexdigest()
        assert [(f["path"], f["lfs"]["oid"]) for f in files] == [(FILE, sha256)]
        got = requests.get(f"{endpoint}{REPO}/resolve/{commit}/{FILE}", timeout=5)
        assert got.status_code == 200 and got.content == source.read_bytes()
        missing = requests.get(f"{endpoint}api/models/acme/absent/refs", timeout=5)
        assert missing.status_code == 404 and missing.headers["X-Error-Code"] == "RepoNotFound"


def test_refs_of_a_pull_through_proxy_come_from_its_upstream(make_app, hub, make_gguf):
    commit = hub.add_repo(REPO, files={FILE: make_gguf(FILE)})
    app = make_app(mirror_pull_through=True)
    with serving(app) as url:
        refs = requests.get(f"{url}/api/models/{REPO}/refs", timeout=10)
        assert refs.status_code == 200 and refs.json()["branches"] == [
            {"name": "main", "ref": "refs/heads/main", "targetCommit": commit}]
    assert hub.bytes_served(hub.cdn_path(REPO, FILE)) == 0, "listing only"
