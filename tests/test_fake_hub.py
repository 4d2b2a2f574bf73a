"""The fake Hub behaves like huggingface.co for the real huggingface_hub client and for requests."""
from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from huggingface_hub import HfApi, get_hf_file_metadata, hf_hub_download, hf_hub_url
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from tests.fakes.hub import FakeHub, Fault
from tests.helpers import REPO_ROOT, free_port

REPO = "acme/tiny-GGUF"
GGUF = "tiny.Q4_K_M.gguf"
GGUF_BYTES = b"GGUF" + bytes(range(256)) * 400  # 102,404 bytes
README = b"# tiny\n"
TOKEN = "hf_good"


@pytest.fixture
def hub():
    with FakeHub(tokens={TOKEN}) as fake:
        fake.add_repo(REPO, files={GGUF: GGUF_BYTES, "README.md": README, "sub/config.json": b"{}"})
        yield fake


@pytest.fixture
def api(hub):
    return HfApi(endpoint=hub.url, token=False)


def cdn_location(hub: FakeHub, path: str = GGUF, token: str | None = None) -> str:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    answer = requests.head(hub.resolve_url(REPO, path), headers=headers, timeout=5)
    assert answer.status_code == 302
    return answer.headers["Location"]


def wait_for_responses_to_end(hub: FakeHub, prefix: str, timeout_s: float = 5.0) -> list:
    """The log's records for `prefix` once each response is finished: the client can hold the last byte
    a moment before the server thread has counted it."""
    return hub.wait_for_responses(prefix, timeout_s)


def read_body(url: str, **kwargs) -> tuple[bytes, Exception | None]:
    """The body bytes that arrived, and the error that ended the read early (or None)."""
    got = bytearray()
    try:
        with requests.get(url, stream=True, **kwargs) as answer:
            for chunk in answer.iter_content(500):  # small: keeps what arrived before an error
                got += chunk
    except requests.RequestException as err:
        return bytes(got), err
    return bytes(got), None


# --- the real huggingface_hub client ---------------------------------------------------------------


def test_model_info_lists_files_with_sha256_and_sizes(hub, api):
    info = api.model_info(REPO, files_metadata=True)

    assert info.id == REPO
    assert info.sha == hub.commit_sha(REPO)
    assert info.private is False and info.gated is False
    siblings = {s.rfilename: s for s in info.siblings}
    assert set(siblings) == {GGUF, "README.md", "sub/config.json"}
    assert siblings[GGUF].size == len(GGUF_BYTES)
    assert siblings[GGUF].lfs.sha256 == hashlib.sha256(GGUF_BYTES).hexdigest()
    assert siblings["README.md"].lfs is None
    assert siblings["README.md"].blob_id == hashlib.sha1(b"blob %d\0" % len(README) + README).hexdigest()


def test_revisions_name_branches_tags_and_commits(hub, api):
    dev = hub.add_commit(REPO, {GGUF: b"GGUF v2"}, branch="dev")
    hub.add_tag(REPO, "v1.0", "main")

    assert api.model_info(REPO, revision="dev", files_metadata=True).sha == dev
    assert api.model_info(REPO, revision="v1.0").sha == hub.commit_sha(REPO)
    assert api.model_info(REPO, revision=dev).sha == dev
    dev_gguf = [f for f in api.list_repo_tree(REPO, revision="dev") if f.path == GGUF]
    assert dev_gguf[0].size == len(b"GGUF v2")
    refs = api.list_repo_refs(REPO)
    assert {b.name: b.target_commit for b in refs.branches}["dev"] == dev
    assert [t.name for t in refs.tags] == ["v1.0"]


def test_list_repo_tree_lists_files_and_folders(api):
    top = {entry.path: type(entry).__name__ for entry in api.list_repo_tree(REPO)}
    everything = [entry.path for entry in api.list_repo_tree(REPO, recursive=True)]
    inside = [entry.path for entry in api.list_repo_tree(REPO, path_in_repo="sub")]

    assert top == {"sub": "RepoFolder", "README.md": "RepoFile", GGUF: "RepoFile"}
    assert "sub/config.json" in everything
    assert inside == ["sub/config.json"]


def test_a_long_tree_comes_in_pages_of_1000_and_model_info_expands_only_what_is_asked(hub, api):
    hub.add_repo("acme/long", files={f"f{i:04d}.json": b"{}" for i in range(2500)})
    hub.clear_log()

    listed = [entry.path for entry in api.list_repo_tree("acme/long", recursive=True)]
    info = api.model_info("acme/long", expand=["sha"])

    assert listed == [f"f{i:04d}.json" for i in range(2500)]
    pages = wait_for_responses_to_end(hub, "/api/models/acme/long/tree/")
    assert [len(p.query.split("cursor=")) for p in pages] == [1, 2, 2], "the first page, then two by cursor"
    assert info.sha == hub.commit_sha("acme/long") and info.siblings is None


def test_file_metadata_of_lfs_file_points_to_the_cdn(hub):
    meta = get_hf_file_metadata(hf_hub_url(REPO, GGUF, endpoint=hub.url), token=False, endpoint=hub.url)

    assert meta.size == len(GGUF_BYTES)
    assert meta.etag == hashlib.sha256(GGUF_BYTES).hexdigest()
    assert meta.commit_hash == hub.commit_sha(REPO)
    assert meta.location.startswith(f"{hub.cdn_url}/cdn-lfs/{REPO}/")


def test_file_metadata_of_small_file_is_its_git_blob(hub):
    meta = get_hf_file_metadata(hf_hub_url(REPO, "README.md", endpoint=hub.url), token=False)

    assert meta.size == len(README)
    assert meta.etag == hub.blob(REPO, "README.md").git_oid


def test_hf_hub_download_gets_the_bytes_without_sending_the_token_to_the_cdn(hub, tmp_path):
    path = hf_hub_download(REPO, GGUF, endpoint=hub.url, token=TOKEN, cache_dir=tmp_path)
    readme = hf_hub_download(REPO, "README.md", endpoint=hub.url, token=TOKEN, cache_dir=tmp_path)

    assert Path(path).read_bytes() == GGUF_BYTES
    assert Path(readme).read_bytes() == README
    cdn = hub.requests_to("/cdn-lfs/")
    assert [r.status for r in cdn] == [200] and not cdn[0].authorization
    assert all(r.authorization for r in hub.requests_to(f"/{REPO}/resolve/"))


def test_missing_repo_raises_repository_not_found(hub, api):
    with pytest.raises(RepositoryNotFoundError) as anonymous:
        api.model_info("acme/nope")
    with pytest.raises(RepositoryNotFoundError) as authenticated:
        HfApi(endpoint=hub.url, token=TOKEN).model_info("acme/nope")

    assert type(anonymous.value) is RepositoryNotFoundError
    assert anonymous.value.response.status_code == 401
    assert authenticated.value.response.status_code == 404


def test_private_repo_is_missing_without_a_reader_token(hub, api, tmp_path):
    hub.add_repo("acme/secret", files={GGUF: GGUF_BYTES}, private=True, readers={"hf_reader"})

    with pytest.raises(RepositoryNotFoundError):
        api.model_info("acme/secret")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("acme/secret", GGUF, endpoint=hub.url, token=TOKEN, cache_dir=tmp_path)
    assert HfApi(endpoint=hub.url, token="hf_reader").model_info("acme/secret").private is True


def test_gated_repo_shows_metadata_but_needs_an_approved_token(hub, api, tmp_path):
    hub.add_repo("acme/gated", files={GGUF: GGUF_BYTES}, gated="manual", approved={"hf_approved"})

    assert api.model_info("acme/gated").gated == "manual"
    with pytest.raises(GatedRepoError) as anonymous:
        hf_hub_download("acme/gated", GGUF, endpoint=hub.url, token=False, cache_dir=tmp_path)
    with pytest.raises(GatedRepoError) as unapproved:
        hf_hub_download("acme/gated", GGUF, endpoint=hub.url, token=TOKEN, cache_dir=tmp_path)
    path = hf_hub_download("acme/gated", GGUF, endpoint=hub.url, token="hf_approved", cache_dir=tmp_path)

    assert anonymous.value.response.status_code == 401
    assert unapproved.value.response.status_code == 403
    assert "not in the authorized list" in unapproved.value.response.headers["X-Error-Message"]
    assert Path(path).read_bytes() == GGUF_BYTES


def test_unknown_revision_raises_revision_not_found(hub, api, tmp_path):
    with pytest.raises(RevisionNotFoundError):
        api.model_info(REPO, revision="nope")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(REPO, GGUF, revision="nope", endpoint=hub.url, token=False, cache_dir=tmp_path)


def test_missing_file_raises_entry_not_found(hub, tmp_path):
    with pytest.raises(RemoteEntryNotFoundError) as caught:
        hf_hub_download(REPO, "nope.gguf", endpoint=hub.url, token=False, cache_dir=tmp_path)

    assert caught.value.response.headers["X-Repo-Commit"] == hub.commit_sha(REPO)


def test_unknown_token_is_rejected_as_invalid_credentials(hub, tmp_path):
    with pytest.raises(HfHubHTTPError) as from_api:
        HfApi(endpoint=hub.url, token="hf_unknown").model_info(REPO)
    with pytest.raises(HfHubHTTPError) as from_download:
        hf_hub_download(REPO, GGUF, endpoint=hub.url, token="hf_unknown", cache_dir=tmp_path)

    for caught in (from_api, from_download):
        assert type(caught.value) is HfHubHTTPError  # not RepositoryNotFoundError
        assert caught.value.response.status_code == 401
        assert "X-Error-Code" not in caught.value.response.headers
        assert caught.value.response.headers["X-Error-Message"] == "Invalid credentials in Authorization header"


def test_whoami_knows_valid_tokens(hub):
    assert HfApi(endpoint=hub.url).whoami(token=TOKEN)["name"].startswith("fake-user-")


# --- ranges, redirects and the log with requests ---------------------------------------------------


def test_range_requests_get_206_with_the_right_bytes(hub):
    url = cdn_location(hub)
    size = len(GGUF_BYTES)

    middle = requests.get(url, headers={"Range": "bytes=100-199"}, timeout=5)
    tail = requests.get(url, headers={"Range": f"bytes={size - 10}-"}, timeout=5)
    beyond = requests.get(url, headers={"Range": f"bytes={size}-"}, timeout=5)

    assert middle.status_code == 206 and middle.content == GGUF_BYTES[100:200]
    assert middle.headers["Content-Range"] == f"bytes 100-199/{size}"
    assert middle.headers["Accept-Ranges"] == "bytes"
    assert middle.headers["ETag"] == f'"{hashlib.sha256(GGUF_BYTES).hexdigest()}"'
    assert tail.status_code == 206 and tail.content == GGUF_BYTES[-10:]
    assert beyond.status_code == 416 and beyond.headers["Content-Range"] == f"bytes */{size}"


def test_files_on_disk_are_served_in_ranges(hub, tmp_path):
    big = tmp_path / "big.gguf"
    big.write_bytes(GGUF_BYTES * 20)
    hub.add_repo("acme/disk", files={"big.gguf": big})

    answer = requests.get(f"{hub.url}/acme/disk/resolve/main/big.gguf", headers={"Range": "bytes=5-"}, timeout=5)

    assert answer.status_code == 206 and answer.content == big.read_bytes()[5:]
    assert hub.blob("acme/disk", "big.gguf").sha256 == hashlib.sha256(big.read_bytes()).hexdigest()


def test_token_never_reaches_the_cdn_when_requests_follows_the_redirect(hub):
    answer = requests.get(hub.resolve_url(REPO, GGUF), headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)

    assert answer.content == GGUF_BYTES
    assert [r.authorization for r in hub.requests_to(f"/{REPO}/resolve/")] == [True]
    assert [r.authorization for r in hub.requests_to("/cdn-lfs/")] == [False]


def test_cdn_refuses_a_tampered_or_expired_signature(hub):
    with FakeHub(cdn_url_ttl_s=-1) as expiring:
        expiring.add_repo(REPO, files={GGUF: GGUF_BYTES})
        expired = requests.get(cdn_location(expiring), timeout=5)

    tampered = requests.get(cdn_location(hub).replace("Signature=", "Signature=0"), timeout=5)

    assert expired.status_code == 403 and tampered.status_code == 403


def test_log_records_range_bytes_and_connections(hub):
    url = cdn_location(hub)
    hub.clear_log()
    with requests.Session() as session:
        for start in (0, 1000, 2000):
            session.get(url, headers={"Range": f"bytes={start}-{start + 99}"}, timeout=5)

    cdn = hub.requests_to(hub.cdn_path(REPO, GGUF))
    assert [r.range for r in cdn] == ["bytes=0-99", "bytes=1000-1099", "bytes=2000-2099"]
    assert [r.status for r in cdn] == [206, 206, 206]
    assert hub.bytes_served("/cdn-lfs/") == 300
    assert hub.connections("/cdn-lfs/") == 1  # keep-alive: one connection for all three


# --- fault knobs -----------------------------------------------------------------------------------


def test_drop_closes_the_connection_mid_body(hub):
    fault = hub.faults.add(Fault.drop(after_bytes=5000), file=GGUF)

    got, err = read_body(cdn_location(hub), timeout=5)
    again, again_err = read_body(cdn_location(hub), timeout=5)

    assert isinstance(err, requests.exceptions.ChunkedEncodingError)
    assert got == GGUF_BYTES[:5000]
    assert again == GGUF_BYTES and again_err is None  # times=1: consumed
    assert fault.fired == 1
    records = wait_for_responses_to_end(hub, "/cdn-lfs/")
    assert [r.body_bytes for r in records] == [5000, len(GGUF_BYTES)]


def test_a_dropped_download_resumes_with_range(hub):
    hub.faults.add(Fault.drop(after_bytes=30_000, times=2), file=GGUF)
    url, got = cdn_location(hub), b""

    with requests.Session() as session:
        for _ in range(3):
            headers = {"Range": f"bytes={len(got)}-"} if got else {}
            with session.get(url, headers=headers, stream=True, timeout=5) as answer:
                try:
                    for chunk in answer.iter_content(1000):
                        got += chunk
                except requests.exceptions.ChunkedEncodingError:
                    continue
            break

    assert got == GGUF_BYTES
    assert [r.range for r in hub.requests_to("/cdn-lfs/")] == [None, "bytes=30000-", "bytes=60000-"]


def test_reset_aborts_the_connection(hub):
    hub.faults.add(Fault.reset(after_bytes=1000), file=GGUF)

    got, err = read_body(cdn_location(hub), timeout=5)

    assert isinstance(err, (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError))
    assert "Connection reset by peer" in str(err)  # an RST, not the clean close of a drop
    assert got == GGUF_BYTES[:len(got)] and len(got) <= 1000


def test_stall_trips_the_client_read_timeout(hub):
    hub.faults.add(Fault.stall(after_bytes=2000), file=GGUF)  # until the hub stops
    began = time.monotonic()

    got, err = read_body(cdn_location(hub), timeout=(5, 0.3))

    assert isinstance(err, requests.exceptions.ConnectionError)  # requests wraps ReadTimeoutError so mid-body
    assert got == GGUF_BYTES[:2000]
    assert 0.3 <= time.monotonic() - began < 3


def test_a_timed_stall_resumes_the_body(hub):
    hub.faults.add(Fault.stall(after_bytes=10, seconds=0.3), file=GGUF)
    began = time.monotonic()

    got, err = read_body(cdn_location(hub), timeout=5)

    assert err is None and got == GGUF_BYTES
    assert time.monotonic() - began >= 0.3


def test_hang_sends_no_status_line(hub):
    hub.faults.add(Fault.hang(), on="api")

    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(f"{hub.url}/api/models/{REPO}", timeout=(5, 0.3))


def test_disconnect_closes_without_an_answer(hub):
    hub.faults.add(Fault.disconnect(), on="resolve")

    with pytest.raises(requests.exceptions.ConnectionError):
        requests.head(hub.resolve_url(REPO, GGUF), timeout=5)
    assert [r.fault for r in hub.requests_to(f"/{REPO}/resolve/")] == ["disconnect"]


def test_status_faults_answer_for_the_next_requests_then_stop(hub):
    hub.faults.add(Fault.status(503, times=2), file=GGUF)
    url = cdn_location(hub)

    codes = [requests.get(url, timeout=5).status_code for _ in range(3)]

    assert codes == [503, 503, 200]


def test_429_carries_retry_after(hub):
    hub.faults.add(Fault.status(429), on="resolve")

    answer = requests.head(hub.resolve_url(REPO, GGUF), timeout=5)

    assert answer.status_code == 429 and answer.headers["Retry-After"] == "1"


def test_status_fault_on_the_api_reaches_the_hub_client(hub, api):
    hub.faults.add(Fault.status(500), on="api")

    with pytest.raises(HfHubHTTPError) as caught:
        api.model_info(REPO)

    assert caught.value.response.status_code == 500


def test_wrong_bytes_keep_the_length_but_not_the_content(hub):
    hub.faults.add(Fault.wrong_bytes(from_offset=4), file=GGUF)

    answer = requests.get(cdn_location(hub), timeout=5)

    assert len(answer.content) == len(GGUF_BYTES)
    assert answer.content[:4] == b"GGUF" and answer.content[4:] != GGUF_BYTES[4:]


def test_ignore_range_answers_200_with_the_whole_file(hub):
    hub.faults.add(Fault.ignore_range(), file=GGUF)

    answer = requests.get(cdn_location(hub), headers={"Range": "bytes=100-"}, timeout=5)

    assert answer.status_code == 200 and answer.content == GGUF_BYTES


def test_permanent_fault_fires_until_cleared(hub):
    hub.faults.add(Fault.status(502, times=None), file=GGUF)
    url = cdn_location(hub)

    before = [requests.get(url, timeout=5).status_code for _ in range(3)]
    hub.faults.clear()

    assert before == [502, 502, 502]
    assert requests.get(url, timeout=5).status_code == 200


def test_faults_only_hit_their_file(hub):
    hub.faults.add(Fault.status(503), file=GGUF)

    assert requests.get(hub.resolve_url(REPO, "README.md"), timeout=5).status_code == 200
    assert requests.get(cdn_location(hub), timeout=5).status_code == 503


def test_throttle_limits_the_rate_of_each_connection(hub):
    hub.throttle_bps = 200_000
    url = cdn_location(hub)
    began = time.monotonic()

    body = requests.get(url, timeout=5).content

    elapsed = time.monotonic() - began
    assert body == GGUF_BYTES
    assert 0.35 <= elapsed < 2.0  # 102 kB at 200 kB/s: about half a second


# --- lifecycle -------------------------------------------------------------------------------------


def test_stop_is_fast_with_a_stalled_connection_open():
    hub = FakeHub().start()
    hub.add_repo(REPO, files={GGUF: GGUF_BYTES})
    hub.faults.add(Fault.stall(after_bytes=10), file=GGUF)
    reader = threading.Thread(target=read_body, args=(cdn_location(hub),), kwargs={"timeout": 10})
    reader.start()
    time.sleep(0.2)

    began = time.monotonic()
    hub.stop()

    assert time.monotonic() - began < 2
    reader.join(5)
    assert not reader.is_alive()


def test_runs_as_a_process_serving_a_folder(tmp_path):
    (tmp_path / GGUF).write_bytes(GGUF_BYTES)
    (tmp_path / "README.md").write_bytes(README)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.hub", "--port", str(port), "--repo", f"{REPO}={tmp_path}"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert "ready" in proc.stdout.readline()
        answer = requests.get(f"http://127.0.0.1:{port}/{REPO}/resolve/main/{GGUF}", timeout=5)
        assert answer.content == GGUF_BYTES
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()
    assert proc.returncode == 0
