"""The checks a pull's bytes pass (proxy/pulls/verify.py): the digest is computed and compared in the algorithm
the remote file names, the served size, and the order size, digest, header."""
from __future__ import annotations

import hashlib
import threading

import pytest

from proxy.errors import ErrorCode, ProxyError
from proxy.pulls.transfer import Transfer, TransferOptions
from proxy.pulls.verify import check_served_size, verify_download
from proxy.retry import Backoff
from proxy.sources.remote import Fetch, RemoteFile
from tests.fakes.hub import FakeHub
from tests.pull_fixtures import KiB, make_gguf  # noqa: F401 - fixture

REPO, FILE = "acme/tiny-GGUF", "tiny.Q4_K_M.gguf"
OPTIONS = TransferOptions(connections=2, chunk_bytes=64 * KiB, stall_timeout_s=5, max_retries=1,
                          backoff=Backoff(0.01, 0.01))


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
def test_the_transfer_hashes_in_the_remote_files_algorithm(tmp_path, make_gguf, algorithm):
    source = make_gguf(FILE, 200 * KiB)
    expected = hashlib.new(algorithm, source.read_bytes()).hexdigest()
    with FakeHub() as hub:
        hub.add_repo(REPO, files={FILE: source})
        dest = tmp_path / "staged.partial"
        digest = Transfer(Fetch(hub.resolve_url(REPO, FILE)), source.stat().st_size, dest, tmp_path / "note.json",
                          expected, OPTIONS, threading.Event(), digest_algorithm=algorithm).run()

    assert digest == expected
    remote = RemoteFile(FILE, source.stat().st_size, expected, Fetch(""), digest_algorithm=algorithm)
    assert verify_download(dest, remote, digest).architecture == "llama"


def test_a_digest_in_another_algorithm_is_compared_in_it(tmp_path, make_gguf):
    source = make_gguf(FILE, 64 * KiB)
    sha512 = hashlib.sha512(source.read_bytes()).hexdigest()
    remote = RemoteFile(FILE, source.stat().st_size, "0" * 128, Fetch(""), digest_algorithm="sha512")

    with pytest.raises(ProxyError) as caught:
        verify_download(source, remote, sha512)
    assert caught.value.code == ErrorCode.CHECKSUM_MISMATCH and caught.value.message.startswith("sha512 ")


def test_size_is_checked_before_the_digest_and_the_digest_before_the_header(tmp_path):
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf at all")
    right = hashlib.sha256(junk.read_bytes()).hexdigest()

    def failure(size: int, digest: str) -> str:
        with pytest.raises(ProxyError) as caught:
            verify_download(junk, RemoteFile(FILE, size, right, Fetch("")), digest)
        return f"{caught.value.code}: {caught.value.message}"

    assert failure(5, "0" * 64).startswith("checksum_mismatch: received 17 bytes")
    assert failure(17, "0" * 64).startswith("checksum_mismatch: sha256 of the received bytes")
    assert failure(17, right).startswith("invalid_gguf: ")


def test_a_server_offering_another_size_is_refused_and_no_size_is_no_answer():
    check_served_size(None, 10, "has")
    check_served_size(10, 10, "sent")
    with pytest.raises(ProxyError, match="the server sent 11 bytes, the source lists 10"):
        check_served_size(11, 10, "sent")
