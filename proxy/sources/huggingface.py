"""The Hugging Face Hub (or a mirror at HF_ENDPOINT) as a source, through huggingface_hub, with our error codes."""
from __future__ import annotations

import dataclasses
import logging
import threading
from dataclasses import dataclass
from typing import Callable, Iterator, TypeVar
from urllib.parse import quote

import httpx2
from huggingface_hub import HfApi, constants, get_hf_file_metadata, hf_hub_url
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import build_hf_headers, paginate

from core import naming
from proxy.errors import ErrorCode, ProxyError
from proxy.sources.remote import Fetch, RemoteFile, RepoFiles, host_of
from proxy.sources.base import Wanted
from proxy.sources.bounded import cap_hub_api_bodies
from proxy.sources.select import select_files
from proxy.retry import PULL_PROGRESS_HEADER, Backoff, BusyWait, parse_progress, parse_retry_after

log = logging.getLogger(__name__)
T = TypeVar("T")
_INVALID_TOKEN_MESSAGE = "Invalid credentials in Authorization header"


class HuggingFaceHub:
    """Listing, metadata and auth through the real client; the bytes go through our transfer code, with a
    fetch that scopes the token to the Hub's own host."""

    def __init__(self, endpoint: str | None, token: str | None, timeout_s: float = 20.0,
                 max_retries: int = 6, backoff: Backoff | None = None, busy_wait_s: float = 0.0):
        self.endpoint = (endpoint or constants.ENDPOINT).rstrip("/")
        self.host = host_of(self.endpoint)  # host:port, as provenance and `complete` name it (docs/api.md)
        self._token = token
        self._timeout_s = timeout_s
        self._max_retries = max_retries
        self._backoff = backoff or Backoff()
        self._busy_wait_s = busy_wait_s  # a mirror's 503 + Retry-After: waited on this long per call, uncounted
        # token=False stops huggingface_hub from picking up a token saved on the machine.
        self._api = HfApi(endpoint=self.endpoint, token=token or False)
        cap_hub_api_bodies()  # model info and tree pages are read through a size cap (docs/api.md, Sources)

    def list_files(self, repo: str, revision: str) -> RepoFiles:
        """The GGUF files of `repo` at `revision`.

        The tree is read page by page, keeping only GGUF entries, so memory holds one page however many
        files the repo has (model info would bring every file of the repo at once).
        """
        asked = Asked(self.endpoint, repo, revision)
        info = self._call(lambda: self._api.model_info(repo, revision=revision, expand=["sha", "private", "gated"],
                                                       timeout=self._timeout_s), asked)
        commit = info.sha if isinstance(info.sha, str) and info.sha else revision
        files = self._call(lambda: tuple(self._remote_file(repo, commit, entry)
                                         for entry in self._tree(repo, commit) if _is_gguf_file(entry)), asked)
        restricted = bool(self._token) and bool(info.private or info.gated)  # what peers may not hand out
        return RepoFiles(repo=repo, revision=revision, commit=commit, files=files, restricted=restricted)

    def _tree(self, repo: str, commit: str) -> Iterator[dict]:
        """Every entry of the repo's tree, as the Hub's JSON, asked one page at a time as the caller reads."""
        # Not HfApi.list_repo_tree: it takes no timeout, and a Hub that stops answering must not hold us.
        url = f"{self.endpoint}/api/models/{repo}/tree/{quote(commit, safe='')}"
        return paginate(url, params={"recursive": True, "expand": False},
                        headers=build_hf_headers(token=self._token or False), timeout=self._timeout_s)

    def _remote_file(self, repo: str, commit: str, entry: dict) -> RemoteFile:
        """Raises: TypeError for an entry not shaped as the Hub's (a source answering something else)."""
        lfs = entry.get("lfs")  # size and sha256 of the bytes; absent for a file kept in git itself
        size, digest = (lfs or entry).get("size"), lfs.get("oid") if lfs else None
        if not (size is None or type(size) is int) or not (digest is None or isinstance(digest, str)):
            raise TypeError("a tree entry whose size or oid is not the Hub's")
        return RemoteFile(filename=entry["path"], size=size, digest=digest,
                          fetch=self._fetch(repo, entry["path"], commit))

    def resolve(self, wanted: Wanted) -> RepoFiles:
        """The listing, the selection by file name or quant, then each chosen file's metadata."""
        listing = self.list_files(wanted.repo, wanted.revision)
        files = select_files(listing, wanted.filename, wanted.quant)
        asked = Asked(self.endpoint, wanted.repo, wanted.revision)
        return dataclasses.replace(listing, files=tuple(self._check(f, asked) for f in files))

    def _check(self, remote: RemoteFile, asked: "Asked") -> RemoteFile:
        """Ask for one file's metadata, so gating and missing files surface as an HTTP status.

        Raises:
            ProxyError: gated_repo, file_not_found, repo_not_found, hub_unavailable, hub_token_rejected.
        """
        meta = self._call(lambda: get_hf_file_metadata(
            remote.fetch.url, token=self._token or False, timeout=self._timeout_s, endpoint=self.endpoint),
            dataclasses.replace(asked, filename=remote.filename))
        etag = (meta.etag or "").lower()
        digest = remote.digest or (etag if _is_sha256(etag) else None)
        return RemoteFile(remote.filename, remote.size or meta.size, digest, remote.fetch)

    def _fetch(self, repo: str, filename: str, commit: str) -> Fetch:
        """The file's resolve URL; the token goes to the Hub's own host only, never where it redirects."""
        url = hf_hub_url(repo, filename, revision=commit, endpoint=self.endpoint)
        auth = {host_of(self.endpoint): {"Authorization": f"Bearer {self._token}"}} if self._token else {}
        return Fetch(url, auth)

    def _call(self, fn: Callable[[], T], asked: "Asked") -> T:
        """Run one hub call, retrying what a flaky network or a busy hub explains, saying what and where.

        Raises:
            ProxyError: mapped from the hub's typed errors (see `map_hub_error`).
        """
        stop, attempt, busy = threading.Event(), 1, BusyWait(self._busy_wait_s)
        while attempt <= self._max_retries:
            try:
                return fn()
            except _UNPARSEABLE as err:  # a 200 with an HTML page, `{}`, entries of another shape: not retried
                raise ProxyError(ErrorCode.HUB_UNAVAILABLE,
                                 f"{asked.endpoint} answered what does not parse as the Hub's "
                                 f"API ({type(err).__name__}) when asked for {asked.what()}") from err
            except (httpx2.TransportError, HfHubHTTPError) as err:
                busy_s = _busy_delay_s(err, busy)
                if busy_s is not None:
                    log.info("%s is busy with %s; asking again in %.1f s", asked.endpoint, asked.what(), busy_s)
                    stop.wait(busy_s)
                    continue
                if not _is_retryable(err) or attempt == self._max_retries:
                    raise map_hub_error(err, asked, attempt) from err
                delay_s = self._backoff.delay_s(attempt, _retry_after(err))
                log.warning("asking %s for %s failed (%s); retrying in %.1f s, attempt %d of %d", asked.endpoint,
                            asked.what(), _reason(err), delay_s, attempt + 1, self._max_retries)
                stop.wait(delay_s)
                attempt += 1
        raise ProxyError(ErrorCode.HUB_UNAVAILABLE, f"{asked.endpoint} was not asked: PULL_MAX_RETRIES is below 1")


@dataclass(frozen=True)
class Asked:
    """What a hub call asked for and where, for the messages of its errors."""

    endpoint: str
    repo: str
    revision: str
    filename: str | None = None

    def what(self) -> str:
        return f"{self.filename + ' in ' if self.filename else ''}{self.repo} at revision {self.revision}"


def map_hub_error(err: Exception, asked: Asked, attempts: int = 1) -> ProxyError:
    """Our stable code for an error of huggingface_hub, from its type and status, never its text; the message
    says what was asked of which endpoint."""
    where = f"asked {asked.endpoint} for {asked.what()}"
    if isinstance(err, GatedRepoError):
        return ProxyError(ErrorCode.GATED_REPO,
                          "this repo is gated: accept its terms on the Hub and set an HF_TOKEN of "
                          f"an approved account; {where}")
    if isinstance(err, RepositoryNotFoundError):
        return ProxyError(ErrorCode.REPO_NOT_FOUND,
                          f"no such repo, or it is private and HF_TOKEN has no access; {where}")
    if isinstance(err, RevisionNotFoundError):
        return ProxyError(ErrorCode.REVISION_NOT_FOUND, f"no such branch, tag or commit in this repo; {where}")
    if isinstance(err, RemoteEntryNotFoundError):
        return ProxyError(ErrorCode.FILE_NOT_FOUND, f"no such file in this repo at this revision; {where}")
    if isinstance(err, HfHubHTTPError) and err.response is not None:
        status = err.response.status_code
        if status == 401 and err.response.headers.get("X-Error-Message") == _INVALID_TOKEN_MESSAGE:
            return ProxyError(ErrorCode.HUB_TOKEN_REJECTED, f"the Hub rejected the configured HF_TOKEN; {where}")
        if status in (401, 403):
            return ProxyError(ErrorCode.HUB_TOKEN_REJECTED,
                              f"the Hub refused access ({status}); check HF_TOKEN; {where}")
        return ProxyError(ErrorCode.HUB_UNAVAILABLE, f"the Hub answered HTTP {status} ({_tries(attempts)}); {where}")
    return ProxyError(ErrorCode.HUB_UNAVAILABLE, f"the Hub could not be reached ({_reason(err)}, {_tries(attempts)}); "
                      f"{where}; check HF_ENDPOINT and the network")


def _tries(attempts: int) -> str:
    return "1 attempt" if attempts == 1 else f"{attempts} attempts"


def _reason(err: Exception) -> str:
    """The kind of failure, never the error's text (it may carry a URL with a signed query)."""
    response = getattr(err, "response", None)
    return f"HTTP {response.status_code}" if response is not None else type(err).__name__


# What a body that is not the Hub's API raises in huggingface_hub's parsing or ours (JSONDecodeError is a
# ValueError; missing keys, entries that are not objects, nesting past Python's parser).
_UNPARSEABLE = (ValueError, KeyError, TypeError, AttributeError, RecursionError)


def _is_gguf_file(entry: dict) -> bool:
    """Raises: TypeError for an entry that is not a JSON object."""
    if not isinstance(entry, dict):
        raise TypeError("a tree entry that is not an object")
    path = entry.get("path", "")
    return entry.get("type") == "file" and isinstance(path, str) and naming.is_gguf(path)


def _is_retryable(err: Exception) -> bool:
    response = getattr(err, "response", None)
    return response is None or response.status_code >= 500 or response.status_code == 429


def _retry_after(err: Exception) -> float | None:
    response = getattr(err, "response", None)
    if response is None or response.status_code != 429:
        return None
    return parse_retry_after(response.headers.get("Retry-After"))


def _busy_delay_s(err: Exception, busy: BusyWait) -> float | None:
    """The wait a 503 with Retry-After asks for (the answer of a peer pulling the file through), while `busy`'s
    budget lasts."""
    response = getattr(err, "response", None)
    if response is None or response.status_code != 503:
        return None
    return busy.delay_s(parse_retry_after(response.headers.get("Retry-After")),
                        parse_progress(response.headers.get(PULL_PROGRESS_HEADER)))


def _is_sha256(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)
