"""The Hub's read-only protocol for the Hub files this proxy holds, so peers and huggingface_hub can fetch
from it (API.md, Serving peers). Files pulled with a token from private or gated repos are served only to
requests bearing PROXY_API_KEY."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, send_file

from proxy.auth import bears_api_key
from proxy.errors import ProxyError
from proxy.provenance import Provenance

bp = Blueprint("peer", __name__)
# An LFS pointer file's size: huggingface_hub reads `pointerSize`; ours are never served, any plausible size does.
POINTER_SIZE = 134


@bp.get("/api/models/<owner>/<name>")
@bp.get("/api/models/<owner>/<name>/revision/<revision>")
def model_info(owner: str, name: str, revision: str = "main"):
    """Raises: ProxyError repo_not_found (with X-Error-Code: RepoNotFound)."""
    repo = f"{owner}/{name}"
    records = _records_at(repo, revision)
    if not records:
        raise _not_found("repo_not_found", "RepoNotFound", f"this proxy holds no file of {repo} at {revision}")
    commit = records[0].commit
    siblings = [{"rfilename": r.repo_path, "size": r.size,
                 "lfs": {"sha256": r.sha256, "size": r.size, "pointerSize": POINTER_SIZE}} for r in records]
    return jsonify(id=repo, modelId=repo, sha=commit, siblings=siblings)


@bp.get("/api/models/<owner>/<name>/tree/<revision>")
def model_tree(owner: str, name: str, revision: str):
    """The held files as the Hub's tree (one page), which HF_MIRRORS peers list with.

    Raises: ProxyError repo_not_found (with X-Error-Code: RepoNotFound).
    """
    repo = f"{owner}/{name}"
    records = _records_at(repo, revision)
    if not records:
        raise _not_found("repo_not_found", "RepoNotFound", f"this proxy holds no file of {repo} at {revision}")
    return jsonify([{"type": "file", "path": r.repo_path, "size": r.size,
                     "lfs": {"oid": r.sha256, "size": r.size, "pointerSize": POINTER_SIZE}} for r in records])


@bp.get("/<owner>/<name>/resolve/<revision>/<path:filename>")
def resolve_file(owner: str, name: str, revision: str, filename: str):
    """The bytes (Range and conditional requests answered by send_file), with the Hub's headers.

    Raises: ProxyError repo_not_found, file_not_found (with the Hub's X-Error-Code).
    """
    repo = f"{owner}/{name}"
    records = _records_at(repo, revision)
    if not records:
        raise _not_found("repo_not_found", "RepoNotFound", f"this proxy holds no file of {repo} at {revision}")
    record = next((r for r in records if r.repo_path == filename), None)
    if record is None:
        raise _not_found("file_not_found", "EntryNotFound", f"this proxy does not hold that file of {repo}")
    response = send_file(current_app.extensions["store"].final_path(record.filename), conditional=True,
                         etag=record.sha256, mimetype="application/octet-stream", max_age=None)
    response.headers.update({"X-Linked-Etag": f'"{record.sha256}"', "X-Linked-Size": str(record.size),
                             "X-Repo-Commit": record.commit, "Accept-Ranges": "bytes"})
    return response


def _records_at(repo: str, revision: str) -> list[Provenance]:
    """The intact Hub files of `repo` this request may have at `revision` (a commit, or the name asked at pull
    time), all of one commit: the most recently pulled one when a branch was pulled at several."""
    store = current_app.extensions["store"]
    installed, allowed = set(store.installed_files()), bears_api_key()
    matching = [r for r in store.provenance.all().values()
                if r.source is None and r.repo.lower() == repo.lower() and revision in (r.commit, r.revision)
                and r.sha256 and r.filename in installed and store.installed_size(r.filename) == r.size
                and (allowed or not r.restricted)]
    if not matching:
        return []
    commit = max(matching, key=lambda r: r.pulled_at).commit
    return sorted((r for r in matching if r.commit == commit), key=lambda r: r.repo_path)


def _not_found(code: str, hub_code: str, message: str) -> ProxyError:
    """The Hub's 404, whose X-Error-Code huggingface_hub maps to its typed errors."""
    return ProxyError(code, message, headers={"X-Error-Code": hub_code})
