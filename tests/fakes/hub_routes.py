"""What the fake Hub answers: routing, access rules and the JSON and headers of huggingface.co."""
from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import parse_qs, quote, unquote

from tests.fakes.hub_payloads import (
    Reply,
    error_reply,
    json_reply,
    model_info_json,
    refs_json,
    tree_reply,
    whoami_reply,
    xml_error,
)
from tests.fakes.hub_repos import Blob, Commit, Repo, RepoStore

INVALID_CREDENTIALS = "Invalid credentials in Authorization header"


@dataclass
class Target:
    """What a request is about, known before access is checked (for the log and fault matching)."""

    action: str  # model_info, tree, refs, whoami, resolve, cdn, root, unknown
    place: str  # api, resolve, cdn, other
    repo_id: str | None = None
    revision: str | None = None
    path: str = ""  # path in repo (resolve, tree)
    sha256: str | None = None  # cdn
    files: tuple[str, ...] = ()
    places: frozenset[str] = frozenset({"any"})


@dataclass
class HubConfig:
    """The parts of FakeHub that answers depend on."""

    store: RepoStore
    tokens: set[str]
    cdn_base: str  # e.g. http://localhost:PORT
    secret: bytes
    cdn_url_ttl_s: float


def classify(config: HubConfig, raw_path: str) -> Target:
    """Name the endpoint a raw (still percent-encoded) path asks for."""
    parts = raw_path.split("/")[1:]
    if raw_path == "/":
        return Target("root", "other")
    if parts[:2] == ["api", "whoami-v2"]:
        return Target("whoami", "api", places=frozenset({"api", "any"}))
    if parts[:2] == ["api", "models"] and len(parts) >= 4:
        return _classify_api(parts[2:])
    if len(parts) >= 5 and parts[2] == "resolve":
        return _classify_resolve(config, parts)
    if parts[0] == "cdn-lfs" and len(parts) == 4:
        repo_id = f"{unquote(parts[1])}/{unquote(parts[2])}"
        found = config.store.find_blob(repo_id, parts[3])
        files = tuple(found[1]) if found else ()
        return Target("cdn", "cdn", repo_id, sha256=parts[3], files=files, places=frozenset({"cdn", "content", "any"}))
    return Target("unknown", "other")


def _classify_api(parts: list[str]) -> Target:
    repo_id = f"{unquote(parts[0])}/{unquote(parts[1])}"
    places = frozenset({"api", "any"})
    rest = parts[2:]
    if not rest:
        return Target("model_info", "api", repo_id, "main", places=places)
    if rest[0] == "revision" and len(rest) == 2:
        return Target("model_info", "api", repo_id, unquote(rest[1]), places=places)
    if rest[0] == "tree" and len(rest) >= 2:
        path = unquote("/".join(rest[2:])).strip("/")
        return Target("tree", "api", repo_id, unquote(rest[1]), path, files=(path,) if path else (), places=places)
    if rest == ["refs"]:
        return Target("refs", "api", repo_id, places=places)
    return Target("unknown", "api", repo_id, places=places)


def _classify_resolve(config: HubConfig, parts: list[str]) -> Target:
    repo_id = f"{unquote(parts[0])}/{unquote(parts[1])}"
    revision, path = unquote(parts[3]), unquote("/".join(parts[4:]))
    repo = config.store.get(repo_id)
    commit = repo.resolve(revision) if repo else None
    blob = commit.files.get(path) if commit else None
    places = {"resolve", "any"} | ({"content"} if blob is not None and not blob.lfs else set())
    return Target("resolve", "resolve", repo_id, revision, path, files=(path,), places=frozenset(places))


def answer(config: HubConfig, target: Target, query: str, headers: Mapping[str, str]) -> Reply:
    """The Hub's answer to a GET (a HEAD sends the same without the body)."""
    if target.action == "cdn":
        return answer_cdn(config, target, query, headers)
    if target.action == "root":
        return json_reply(200, {"fake_hub": True})
    if target.action == "unknown":
        return Reply(404, [("Content-Type", "text/plain; charset=utf-8")], b"Not Found")
    token = bearer_token(headers)
    if token is not None and token not in config.tokens:
        return error_reply(401, None, INVALID_CREDENTIALS)
    if target.action == "whoami":
        return whoami_reply(token)
    repo = config.store.get(target.repo_id or "")
    if repo is None or (repo.private and token not in repo.readers):
        return error_reply(401 if token is None else 404, "RepoNotFound", "Repository not found")
    if target.action == "refs":
        return json_reply(200, refs_json(repo, "include_prs=true" in query))
    commit = repo.resolve(target.revision or "main")
    if commit is None:
        return error_reply(404, "RevisionNotFound", f"Invalid rev id: {target.revision}")
    if target.action == "model_info":
        params = parse_qs(query)
        return json_reply(200, model_info_json(repo, commit, "blobs=true" in query.lower(), params.get("expand")))
    if target.action == "tree":
        return tree_reply(repo, commit, target.path, parse_qs(query), tree_url(target, headers))
    return answer_resolve(config, repo, commit, target, token, headers)


def tree_url(target: Target, headers: Mapping[str, str]) -> str:
    """The absolute URL of a tree listing, without its query: the base of the next page's link."""
    path = f"/{quote(target.path)}" if target.path else ""
    revision = quote(target.revision or "", safe="")
    return f"http://{headers.get('Host')}/api/models/{target.repo_id}/tree/{revision}{path}"


def answer_resolve(
    config: HubConfig, repo: Repo, commit: Commit, target: Target, token: str | None, headers: Mapping[str, str]
) -> Reply:
    if repo.gated and token not in repo.approved:
        if token is None:
            message = (f"Access to model {repo.repo_id} is restricted. You must have access to it and be "
                       "authenticated to access it. Please log in.")
            return error_reply(401, "GatedRepo", message)
        message = (f"Access to model {repo.repo_id} is restricted and you are not in the authorized list. "
                   f"Visit https://huggingface.co/{repo.repo_id} to ask for access.")
        return error_reply(403, "GatedRepo", message)
    blob = commit.files.get(target.path)
    if blob is None:
        reply = error_reply(404, "EntryNotFound", "Entry not found")
        reply.headers.append(("X-Repo-Commit", commit.sha))
        return reply
    repo_headers = [("X-Repo-Commit", commit.sha), ("Vary", "Origin, Accept")]
    if not blob.lfs:
        reply = content_reply(blob, headers.get("Range"), f'"{blob.git_oid}"')
        reply.headers += repo_headers
        return reply
    location = cdn_url(config, repo.repo_id, blob.sha256, target.path)
    body = f"Found. Redirecting to {location}".encode()
    return Reply(302, [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Location", location),
        ("ETag", f'W/"{hashlib.sha1(body).hexdigest()[:27]}"'),
        ("X-Linked-Etag", f'"{blob.sha256}"'),
        ("X-Linked-Size", str(blob.listed_size)),
        ("Accept-Ranges", "bytes"),
        *repo_headers,
    ], body)


def answer_cdn(config: HubConfig, target: Target, query: str, headers: Mapping[str, str]) -> Reply:
    """Bytes of an LFS blob, for a signed URL; the Authorization header is neither needed nor looked at."""
    params = {k: v[0] for k, v in parse_qs(query).items()}
    expires = params.get("Expires", "")
    expected = sign(config.secret, f"/cdn-lfs/{target.repo_id}/{target.sha256}", expires)
    if not hmac.compare_digest(params.get("X-Amz-Signature", ""), expected):
        return xml_error(403, "SignatureDoesNotMatch", "The request signature we calculated does not match.")
    if not expires.isdigit() or int(expires) < time.time():
        return xml_error(403, "AccessDenied", "Request has expired")
    found = config.store.find_blob(target.repo_id or "", target.sha256 or "")
    if found is None:
        return xml_error(404, "NoSuchKey", "The specified key does not exist.")
    reply = content_reply(found[0], headers.get("Range"), f'"{found[0].sha256}"')
    if "response-content-disposition" in params:
        reply.headers.append(("Content-Disposition", params["response-content-disposition"]))
    return reply


def content_reply(blob: Blob, range_header: str | None, etag: str, ignore_range: bool = False) -> Reply:
    """200 with the whole blob, 206 with the asked range, or 416; as S3/CloudFront behind the Hub does."""
    common = [("Content-Type", "application/octet-stream"), ("Accept-Ranges", "bytes"), ("ETag", etag)]
    span = None if ignore_range else parse_range(range_header, blob.size)
    if span == "unsatisfiable":
        return Reply(416, [*common, ("Content-Range", f"bytes */{blob.size}")])
    if span is None:
        return Reply(200, common, blob=blob, start=0, length=blob.size)
    start, end = span
    content_range = ("Content-Range", f"bytes {start}-{end}/{blob.size}")
    return Reply(206, [*common, content_range], blob=blob, start=start, length=end - start + 1)


def parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """(first, last) byte of a single `bytes=` range, "unsatisfiable", or None to serve the whole file."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None  # absent, another unit, or several ranges: ignored, as a server may
    first, _, last = header[len("bytes="):].strip().partition("-")
    try:
        if first == "":  # suffix range: the last N bytes
            count = int(last)
            return "unsatisfiable" if count <= 0 or size == 0 else (max(size - count, 0), size - 1)
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start >= size:
        return "unsatisfiable"
    return None if end < start else (start, min(end, size - 1))


def cdn_url(config: HubConfig, repo_id: str, sha256: str, path: str) -> str:
    expires = str(int(time.time() + config.cdn_url_ttl_s))
    name = path.rsplit("/", 1)[-1]
    disposition = quote(f"attachment; filename*=UTF-8''{quote(name)}; filename=\"{name}\";", safe="")
    cdn_path = f"/cdn-lfs/{repo_id}/{sha256}"
    signature = sign(config.secret, cdn_path, expires)
    return (f"{config.cdn_base}{cdn_path}?response-content-disposition={disposition}"
            f"&Expires={expires}&X-Amz-Signature={signature}")


def sign(secret: bytes, path: str, expires: str) -> str:
    return hmac.new(secret, f"{path}\n{expires}".encode(), hashlib.sha256).hexdigest()


def bearer_token(headers: Mapping[str, str]) -> str | None:
    value = headers.get("Authorization")
    if value is None:
        return None
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else value  # anything else is an unknown credential


def request_id() -> str:
    return f"Root=1-{int(time.time()):x}-{uuid.uuid4().hex[:24]}"
