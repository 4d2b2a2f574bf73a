"""The Hub's read-only protocol for the Hub files this proxy holds, so peers and huggingface_hub can fetch
from it (docs/api.md, Serving peers). Files pulled with a token from private or gated repos are served only to
requests bearing PROXY_API_KEY.

With MIRROR_PULL_THROUGH, a file it lacks (of a repo within ALLOWED_REPOS, asked with PROXY_API_KEY when one is
set) becomes its own pull, planned in the pull queue (proxy/pulls/through.py), answered 503 with Retry-After at
once and until installed; the listing of a repo it does not hold comes from its upstream, a few at a time.

Names in the path are checked as a pull checks them: what could not be pulled is not here (the Hub's 404)."""
from __future__ import annotations

import contextlib

from flask import Blueprint, jsonify

from core import naming
from proxy.routes.auth import bears_api_key
from proxy.errors import ErrorCode, ProxyError
from proxy.models_dir.provenance import Provenance
from proxy.pulls.events import Failed
from proxy.pulls.planning import Plan
from proxy.sources.remote import RepoFiles
from proxy.pulls.request import PullRequest, check_repo_allowed, parse_repo_id, parse_revision
from proxy.retry import PULL_PROGRESS_HEADER
from proxy.routes.file_bytes import file_response
from proxy.services import services

bp = Blueprint("peer", __name__)
# An LFS pointer file's size: huggingface_hub reads `pointerSize`; ours are never served, any plausible size does.
POINTER_SIZE = 134
PULL_THROUGH_RETRY_AFTER_S = 2  # what a peer is told to wait while this proxy pulls the file it asked for
QUEUE_FULL_RETRY_AFTER_S = 10  # ... and when the pull queue has no room for another pull
UPSTREAM_LISTINGS_MAX = 4  # listings asked of the upstream at once for peers; more are answered 503 at once
# Upstream errors that mean "not here" to a peer (the Hub's 404s): ErrorCode.peer_repo_miss, peer_file_miss.


@bp.get("/api/models/<owner>/<name>")
@bp.get("/api/models/<owner>/<name>/revision/<revision>")
def model_info(owner: str, name: str, revision: str = "main"):
    """Raises: ProxyError repo_not_found (with X-Error-Code: RepoNotFound)."""
    repo = _checked_repo(owner, name, revision)
    records = _records_at(repo, revision)
    if not records and _pulls_through(repo):
        listing = _upstream_listing(repo, revision)
        return jsonify(id=repo, modelId=repo, sha=listing.commit, **_gating(listing.restricted),
                       siblings=[_sibling(f.filename, f.size, f.sha256) for f in listing.files])
    if not records:
        raise _not_found(ErrorCode.REPO_NOT_FOUND, "RepoNotFound", f"this proxy holds no file of {repo} at {revision}")
    return jsonify(id=repo, modelId=repo, sha=records[0].commit, **_gating(any(r.restricted for r in records)),
                   siblings=[_sibling(r.repo_path, r.size, r.sha256) for r in records])


def _sibling(path: str, size: int, sha256: str) -> dict:
    """One file as model info lists it."""
    return {"rfilename": path, "size": size, "lfs": {"sha256": sha256, "size": size, "pointerSize": POINTER_SIZE}}


def _tree_entry(path: str, size: int, sha256: str) -> dict:
    """One file as the tree lists it."""
    return {"type": "file", "path": path, "size": size,
            "lfs": {"oid": sha256, "size": size, "pointerSize": POINTER_SIZE}}


def _gating(restricted: bool) -> dict:
    """The Hub's `private` and `gated` of a listing: a peer that gets restricted files through its key marks
    them restricted in turn (proxy/sources/huggingface.py), so it never hands them out without the key either."""
    return {"private": False, "gated": "manual" if restricted else False}


@bp.get("/api/models/<owner>/<name>/tree/<revision>")
def model_tree(owner: str, name: str, revision: str):
    """The held files as the Hub's tree (one page), which HF_MIRRORS peers list with.

    Raises: ProxyError repo_not_found (with X-Error-Code: RepoNotFound).
    """
    repo = _checked_repo(owner, name, revision)
    records = _records_at(repo, revision)
    if not records and _pulls_through(repo):
        return jsonify([_tree_entry(f.filename, f.size, f.sha256) for f in _upstream_listing(repo, revision).files])
    if not records:
        raise _not_found(ErrorCode.REPO_NOT_FOUND, "RepoNotFound", f"this proxy holds no file of {repo} at {revision}")
    return jsonify([_tree_entry(r.repo_path, r.size, r.sha256) for r in records])


@bp.get("/api/models/<owner>/<name>/refs")
def model_refs(owner: str, name: str):
    """The branches this proxy holds files of, as the Hub lists refs (llama.cpp's `-hf` asks this first, for
    the commit of `main`): each branch name pulled, at the commit most recently pulled under it; `main` at the
    newest commit when only commits were pinned.

    Raises: ProxyError repo_not_found (with X-Error-Code: RepoNotFound).
    """
    repo = _checked_repo(owner, name)
    records = _held(repo)
    if not records and _pulls_through(repo):
        return jsonify(branches=[_branch("main", _upstream_listing(repo, "main").commit)], tags=[], converts=[])
    if not records:
        raise _not_found(ErrorCode.REPO_NOT_FOUND, "RepoNotFound", f"this proxy holds no file of {repo}")
    newest: dict[str, Provenance] = {}
    for record in sorted(records, key=lambda r: r.pulled_at):
        if not record.commit.startswith(record.revision):  # a name, not a (short) commit
            newest[record.revision] = record
    branches = {name: record.commit for name, record in newest.items()} or \
        {"main": max(records, key=lambda r: r.pulled_at).commit}
    return jsonify(branches=[_branch(name, commit) for name, commit in sorted(branches.items())], tags=[],
                   converts=[])


def _branch(name: str, commit: str) -> dict:
    return {"name": name, "ref": f"refs/heads/{name}", "targetCommit": commit}


@bp.get("/<owner>/<name>/resolve/<revision>/<path:filename>")
def resolve_file(owner: str, name: str, revision: str, filename: str):
    """The bytes (whole or one range, sent with sendfile under gunicorn), with the Hub's headers.

    Raises: ProxyError repo_not_found, file_not_found (with the Hub's X-Error-Code).
    """
    repo = _checked_repo(owner, name, revision)
    if not naming.is_safe_path(filename):
        raise _not_found(ErrorCode.FILE_NOT_FOUND, "EntryNotFound", f"this proxy does not hold that file of {repo}")
    records = _records_at(repo, revision)
    record = next((r for r in records if r.repo_path == filename), None)
    if record is None and _pulls_through(repo):
        records = _pull_through(repo, revision, filename)
        record = next((r for r in records if r.repo_path == filename), None)
    if not records:
        raise _not_found(ErrorCode.REPO_NOT_FOUND, "RepoNotFound", f"this proxy holds no file of {repo} at {revision}")
    if record is not None:
        with contextlib.suppress(FileNotFoundError):  # else removed (evicted, deleted) since it was listed
            response = file_response(services().store.final_path(record.filename), record.sha256)
            response.headers.update({"X-Linked-Etag": f'"{record.sha256}"', "X-Linked-Size": str(record.size),
                                     "X-Repo-Commit": record.commit, "Accept-Ranges": "bytes"})
            return response
    raise _not_found(ErrorCode.FILE_NOT_FOUND, "EntryNotFound", f"this proxy does not hold that file of {repo}")


def _checked_repo(owner: str, name: str, revision: str = "main") -> str:
    """`owner/name`, when it and the revision are what a pull accepts.

    Raises: ProxyError repo_not_found (RepoNotFound) or revision_not_found (RevisionNotFound), the Hub's 404s.
    """
    try:
        repo = parse_repo_id(f"{owner}/{name}")
    except ProxyError as err:
        raise _not_found(ErrorCode.REPO_NOT_FOUND,
                         "RepoNotFound", "no such repo: not an owner/name a pull accepts") from err
    try:
        parse_revision(revision)
    except ProxyError as err:
        raise _not_found(ErrorCode.REVISION_NOT_FOUND, "RevisionNotFound", f"no such revision of {repo}") from err
    return repo


def _held(repo: str) -> list[Provenance]:
    """The intact Hub files of `repo` that this request may have, at any revision."""
    store = services().store
    installed, allowed = set(store.installed_files()), bears_api_key()
    return [r for r in store.provenance.all().values()
            if r.scheme == naming.HUB_SCHEME and r.repo.lower() == repo.lower()
            and r.sha256 and r.filename in installed and store.installed_size(r.filename) == r.size
            and (allowed or not r.restricted)]


def _records_at(repo: str, revision: str) -> list[Provenance]:
    """The held files of `repo` at `revision` (a commit, or the name asked at pull time), all of one commit:
    the most recently pulled one when a branch was pulled at several."""
    matching = [r for r in _held(repo) if revision in (r.commit, r.revision)]
    if not matching:
        return []
    commit = max(matching, key=lambda r: r.pulled_at).commit
    return sorted((r for r in matching if r.commit == commit), key=lambda r: r.repo_path)


def _pulls_through(repo: str) -> bool:
    """MIRROR_PULL_THROUGH is on, the request bears PROXY_API_KEY when one is set (a keyless miss must not make
    this proxy pull, nor evict for it), and the repo is within ALLOWED_REPOS."""
    settings = services().settings
    if not settings.mirror_pull_through or (settings.api_key and not bears_api_key()):
        return False
    try:
        check_repo_allowed(repo, settings.allowed_repos)
    except ProxyError:
        return False
    return True


def _upstream_listing(repo: str, revision: str) -> RepoFiles:
    """The GGUF files of `repo` as this proxy's upstream lists them (listing only, no bytes); what a peer may
    not have is the Hub's 404.

    Raises: ProxyError repo_not_found (RepoNotFound), server_busy (503, Retry-After) while UPSTREAM_LISTINGS_MAX
        listings are asked already, and as the source's list_files (hub_unavailable).
    """
    slots = services().upstream_listings
    if not slots.acquire(blocking=False):
        raise _busy("this proxy is asking its upstream for other listings; ask again")
    try:
        listing = services().source.for_scheme(naming.HUB_SCHEME).list_files(repo, revision)
    except ProxyError as err:
        if err.code.peer_repo_miss:
            raise _not_found(ErrorCode.REPO_NOT_FOUND,
                             "RepoNotFound", f"no such repo upstream: {repo} at {revision}") from err
        raise
    finally:
        slots.release()
    if listing.restricted and not bears_api_key():  # a peer never gets what the Hub would not give it
        raise _not_found(ErrorCode.REPO_NOT_FOUND, "RepoNotFound", f"this proxy holds no file of {repo} at {revision}")
    return listing


def _pull_through(repo: str, revision: str, filename: str) -> list[Provenance]:
    """Start (or join) this proxy's own pull of a file a peer asked for, planned in the pull queue; the held
    records once it is installed.

    Raises: ProxyError server_busy (503, Retry-After) while the pull is queued or runs, or the queue is full;
    the Hub's 404s for what upstream lacks or the asker may not have; how else the pull failed.
    """
    if not naming.is_gguf(filename):
        raise _not_found(ErrorCode.FILE_NOT_FOUND, "EntryNotFound", f"this proxy pulls only GGUF files of {repo}")
    # As asked: the installed file is found under this revision.
    request = PullRequest(repo=repo, filename=filename, revision=revision)
    may_have_restricted = bears_api_key()
    try:
        ended, completed = services().pull_through.ask(request, lambda plan: _admit(plan, may_have_restricted))
    except ProxyError as err:
        if err.code.queue_is_busy:
            raise _busy(f"this proxy's pull queue is busy ({err.code}); ask again", QUEUE_FULL_RETRY_AFTER_S) from err
        raise
    if isinstance(ended, Failed):
        if ended.code.peer_repo_miss:
            raise _not_found(ErrorCode.REPO_NOT_FOUND, "RepoNotFound", f"{repo} cannot be pulled: {ended.code}")
        if ended.code.peer_file_miss:
            raise _not_found(ErrorCode.FILE_NOT_FOUND, "EntryNotFound", f"{filename} cannot be pulled: {ended.code}")
        raise ProxyError(ended.code, f"this proxy's pull of {filename} failed: {ended.error}")
    records = _records_at(repo, revision)
    if ended is None or not records:
        busy = _busy(f"this proxy is pulling {filename} of {repo} from its upstream; ask again")
        busy.headers[PULL_PROGRESS_HEADER] = str(completed)  # the asker waits while this grows
        raise busy
    return records


def _admit(plan: Plan, may_have_restricted: bool) -> None:
    """A peer never makes this proxy pull what it may not be given (a gated or private file, without the key).

    Raises: ProxyError repo_not_found.
    """
    if plan.resolved.restricted and not may_have_restricted:
        raise ProxyError(ErrorCode.REPO_NOT_FOUND, f"{plan.request.repo} is restricted; this proxy pulls it only for "
                         "requests bearing PROXY_API_KEY")


def _busy(message: str, retry_after_s: int = PULL_THROUGH_RETRY_AFTER_S) -> ProxyError:
    """503 + Retry-After."""
    return ProxyError(ErrorCode.SERVER_BUSY, message, headers={"Retry-After": str(retry_after_s)})


def _not_found(code: str, hub_code: str, message: str) -> ProxyError:
    """The Hub's 404, whose X-Error-Code huggingface_hub maps to its typed errors."""
    return ProxyError(code, message, headers={"X-Error-Code": hub_code})
