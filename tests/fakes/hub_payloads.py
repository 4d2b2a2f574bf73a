"""The JSON (and S3 XML) bodies the fake Hub answers with, shaped like huggingface.co's."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlencode

from tests.fakes.hub_repos import Blob, Commit, Repo, list_tree, tree_oid

TREE_PAGE = 1000  # entries a tree page holds on the Hub; 50 with expand=true
TREE_PAGE_EXPANDED = 50


@dataclass
class Reply:
    """A response to send: status, headers and a body of bytes or of a blob's byte range."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    blob: Blob | None = None
    start: int = 0
    length: int = 0

    @property
    def content_length(self) -> int:
        return self.length if self.blob is not None else len(self.body)


def model_info_json(repo: Repo, commit: Commit, blobs: bool, expand: list[str] | None = None) -> dict:
    """The model info; with `expand`, only those fields and the ids, as the Hub answers `?expand=sha`."""
    listed = repo.lists_siblings and (not expand or "siblings" in expand)
    info = {
        "_id": hashlib.md5(repo.repo_id.encode()).hexdigest()[:24],
        "id": repo.repo_id,
        "modelId": repo.repo_id,
        "author": repo.repo_id.split("/")[0],
        "sha": commit.sha,
        "lastModified": iso(commit.date),
        "createdAt": iso(repo.created),
        "private": repo.private,
        "gated": repo.gated,
        "disabled": False,
        "downloads": 0,
        "likes": 0,
        "library_name": "gguf" if any(n.endswith(".gguf") for n in commit.files) else None,
        "tags": list(repo.tags_meta),
        "siblings": siblings_json(commit, blobs) if listed else None,
        "spaces": [],
        "usedStorage": sum(b.size for b in commit.files.values()),
    }
    return {k: v for k, v in info.items() if k in ("_id", "id") or k in expand} if expand else info


def siblings_json(commit: Commit, blobs: bool) -> list[dict]:
    siblings = []
    for name in sorted(commit.files):
        blob = commit.files[name]
        sibling: dict = {"rfilename": name}
        if blobs:
            sibling.update(blobId=blob.git_oid, size=blob.listed_size)
            if blob.lfs:
                sibling["lfs"] = {"sha256": blob.sha256, "size": blob.listed_size, "pointerSize": blob.pointer_size}
        siblings.append(sibling)
    return siblings


def tree_reply(repo: Repo, commit: Commit, folder: str, params: dict[str, list[str]], url: str) -> Reply:
    """One page of a tree listing, with a `Link: <url>; rel="next"` header while more follow (as the Hub)."""
    recursive = params.get("recursive", ["false"])[0].lower() == "true"
    expand = params.get("expand", ["false"])[0].lower() == "true"
    blob = commit.files.get(folder)
    entries = [("file", folder)] if blob is not None else cached_tree(commit, folder, recursive)
    if entries is None:
        return error_reply(404, "EntryNotFound", f"{folder} does not exist on \"{commit.sha}\"")
    start = int(params.get("cursor", ["0"])[0])
    end = start + (TREE_PAGE_EXPANDED if expand else TREE_PAGE)
    last_commit = {"id": commit.sha, "title": commit.title, "date": iso(commit.date)}
    items = []
    for kind, path in entries[start:end]:
        if kind == "directory":
            item: dict = {"type": "directory", "oid": tree_oid(path, commit.files), "size": 0, "path": path}
        else:
            file_blob = commit.files[path]
            item = {"type": "file", "oid": file_blob.git_oid, "size": file_blob.listed_size, "path": path}
            if file_blob.lfs:
                item["lfs"] = {"oid": file_blob.sha256, "size": file_blob.listed_size,
                               "pointerSize": file_blob.pointer_size}
        if expand:
            item["lastCommit"] = last_commit
        items.append(item)
    reply = json_reply(200, items)
    if end < len(entries):
        query = urlencode({"recursive": str(recursive).lower(), "expand": str(expand).lower(), "cursor": end})
        reply.headers.append(("Link", f'<{url}?{query}>; rel="next"'))
    return reply


def cached_tree(commit: Commit, folder: str, recursive: bool) -> list[tuple[str, str]] | None:
    """list_tree of a commit, computed once per page run rather than once per page. Keyed by the number of
    files too: tests change a commit's files in place (declare_huge_file)."""
    key = (folder, recursive, len(commit.files))
    if key not in commit.listings:
        commit.listings[key] = list_tree(commit.files, folder, recursive)
    return commit.listings[key]


def refs_json(repo: Repo, include_prs: bool) -> dict:
    def ref(kind: str, name: str, sha: str) -> dict:
        return {"name": name, "ref": f"refs/{kind}/{name}", "targetCommit": sha}

    data = {
        "branches": [ref("heads", n, s) for n, s in sorted(repo.branches.items())],
        "tags": [ref("tags", n, s) for n, s in sorted(repo.git_tags.items())],
        "converts": [],
    }
    if include_prs:
        data["pullRequests"] = []
    return data


def whoami_reply(token: str | None) -> Reply:
    if token is None:
        return error_reply(401, None, "Invalid username or password.")
    name = "fake-user-" + hashlib.sha256(token.encode()).hexdigest()[:8]
    access = {"displayName": "fake-token", "role": "read"}
    return json_reply(200, {"type": "user", "id": name, "name": name, "fullname": "Fake User",
                            "auth": {"type": "access_token", "accessToken": access}})


def json_reply(status: int, data: object) -> Reply:
    return Reply(status, [("Content-Type", "application/json; charset=utf-8")], json.dumps(data).encode())


def error_reply(status: int, code: str | None, message: str) -> Reply:
    reply = json_reply(status, {"error": message})
    if code is not None:
        reply.headers.append(("X-Error-Code", code))
    reply.headers.append(("X-Error-Message", message))
    return reply


def xml_error(status: int, code: str, message: str) -> Reply:
    body = f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>'
    return Reply(status, [("Content-Type", "application/xml")], body.encode())


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
