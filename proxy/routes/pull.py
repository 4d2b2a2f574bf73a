"""POST /v1/api/pull and the views of pulls and of a repo's files."""
from __future__ import annotations

from flask import Blueprint, jsonify, request, url_for

from core import naming
from proxy.routes.auth import bears_api_key, require_api_key
from proxy.errors import ErrorCode, ProxyError
from proxy.pulls.jobs import PullJob
from proxy.pulls.request import check_repo_allowed, parse_model, parse_revision
from proxy.sources.select import group_models, recommended
from proxy.routes.body import json_body
from proxy.routes.ndjson import event_stream, final_answer
from proxy.services import services

bp = Blueprint("pull", __name__)


@bp.post("/v1/api/pull")
@require_api_key
def pull():
    ticket = services().pull_service.start(json_body())
    asked = ticket.request
    if ticket.cached is not None:
        return event_stream([ticket.cached]) if asked.stream and not asked.run_async else final_answer(ticket.cached)
    if asked.run_async:
        status_url = url_for("pull.get_pull", job_id=ticket.job.id)
        return jsonify(id=ticket.job.id, status=ticket.job.latest.status, status_url=status_url), 202
    if not asked.stream:
        return final_answer(ticket.wait())
    return event_stream(ticket.events())


@bp.get("/v1/api/pulls")
def list_pulls():
    return jsonify(pulls=[job.summary() for job in services().pulls.jobs()])


@bp.get("/v1/api/pulls/<job_id>")
def get_pull(job_id: str):
    job: PullJob | None = services().pulls.get(job_id)
    if job is None:
        raise ProxyError(ErrorCode.NOT_FOUND, f"no pull with id {job_id}")
    return jsonify(job.summary())


@bp.get("/v1/api/files")
def list_files():
    repo = parse_model(request.args.get("model", ""))[0]
    revision = parse_revision(request.args.get("revision"))
    check_repo_allowed(repo, services().settings.allowed_repos)
    keyless = bool(services().settings.api_key) and not bears_api_key()
    if keyless and (naming.scheme_of(repo) or naming.HUB_SCHEME) != naming.HUB_SCHEME:
        raise ProxyError(ErrorCode.AUTH_REQUIRED, "listing a registry reference connects to the host it names: "
                         "it needs 'Authorization: Bearer <PROXY_API_KEY>'")
    listing = services().source.list_files(repo, revision)
    if keyless and listing.restricted:  # seen through our HF_TOKEN: a keyless caller sees what the Hub shows it
        raise ProxyError(ErrorCode.REPO_NOT_FOUND, f"repo {repo} not found, or private or gated: listing it needs "
                         "'Authorization: Bearer <PROXY_API_KEY>'")
    files = [_describe_file(remote) for group in group_models(listing) for remote in group]
    return jsonify(model=repo, revision=revision, commit=listing.commit, files=files,
                   recommended=recommended(listing))


def _describe_file(remote) -> dict:
    part = naming.split_part(remote.filename)
    return {"filename": remote.filename, "size": remote.size, "sha256": remote.sha256,
            "quant": naming.quant_of(remote.filename),
            "split": {"index": part.index, "count": part.count} if part else None}

