"""The OpenAPI 3.1 document of every proxy endpoint, error codes included."""
from __future__ import annotations

import dataclasses
import typing

from proxy import VERSION
from proxy.errors import STATUS_BY_CODE, ErrorCode
from proxy.openapi.primitives import GUARDED, INT, JSON, NULLABLE_INT, NULLABLE_STR, OBJ, STR, json_content, ref
from proxy.openapi import agents as openapi_agents
from proxy.openapi import llama_server as openapi_llama_server
from proxy.openapi import ollama as openapi_ollama
from proxy.pulls.events import EVENT_TYPES, PullEvent
from proxy.pushes.events import PUSH_EVENT_TYPES

INSTALLED_REQUIRED = ["id", "filename", "size", "intact", "last_used", "details"]
# What the GGUF header says (proxy.models_dir.details), as Ollama's `details`; null where the header does not say.
MODEL_DETAILS = {"type": "object", "required": ["architecture", "parameters", "quantization", "context_length"],
                 "properties": {"architecture": {**NULLABLE_STR, "description": "general.architecture"},
                                "parameters": {**NULLABLE_INT, "description": "elements of all tensors in the file"},
                                "quantization": {**NULLABLE_STR, "description": "general.file_type by name: Q4_K_M"},
                                "context_length": {**NULLABLE_INT, "description": "<architecture>.context_length"}}}
DECLARED = ("model", "filename", "state", "sha256", "revision", "error", "code")
REPO_ID = r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?/[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?(:[A-Za-z0-9_]+)?$"


def _errors(*statuses: int, schema: str = "Error") -> dict:
    """Every endpoint may answer these with the error object (405/413 come from routing and size limits);
    the OpenAI-compatible ones with OpenAI's (`schema="OpenAIError"`)."""
    return {str(s): json_content(ref(schema), "error") for s in sorted({*statuses, 404, 405, 413, 500})}


def _op(summary: str, responses: dict, body: dict | None = None, params: list | None = None) -> dict:
    op = {"summary": summary, "responses": responses}
    if body is not None:
        op["requestBody"] = {"required": True, "content": {JSON: {"schema": body}}}
    if params:
        op["parameters"] = params
    return op


def _forwarded(summary: str, error_schema: str = "OpenAIError") -> dict:
    ok = {"description": "the backend's answer, or its SSE stream",
          "content": {JSON: {"schema": OBJ}, "text/event-stream": {"schema": STR}}}
    errors = _errors(400, 404, 422, 502, 503, 504, schema=error_schema)
    return {"post": _op(summary, {"200": ok, **errors}, body=OBJ)}


# JSON Schema of an event field, by its type hint.
_FIELD_SCHEMAS = {str: STR, ErrorCode: STR, str | None: NULLABLE_STR, int: INT, float: {"type": "number"},
                  bool: {"type": "boolean"},
                  tuple[str, ...]: {"type": "array", "items": STR}}


def _event_schema(kind: type[PullEvent]) -> dict:
    """One NDJSON line of a pull, from its event class: a field with a default may be left out."""
    hints = typing.get_type_hints(kind)
    fields = dataclasses.fields(kind)
    properties = {"status": {"const": kind.status}}
    properties.update({f.name: {**_FIELD_SCHEMAS[hints[f.name]], **f.metadata.get("schema", {})} for f in fields})
    required = ["status"] + [f.name for f in fields if f.default is dataclasses.MISSING]
    return {"type": "object", "required": required, "properties": properties}


def _schemas() -> dict:
    codes = sorted(STATUS_BY_CODE)
    return {**_error_schemas(codes), **_pull_schemas(), **_model_schemas(codes), **openapi_ollama.schemas(),
            **_delete_schemas(), **openapi_llama_server.schemas(), **openapi_agents.schemas()}


def _error_schemas(codes: list[str]) -> dict:
    """docs/api.md's error and OpenAI's."""
    return {
        "Error": {"type": "object", "required": ["status", "error", "code"], "properties": {
            "status": {"const": "error"}, "error": STR, "code": {"enum": codes}}},
        "OpenAIError": {"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["message", "type", "code"], "properties": {
                "message": STR, "code": {"enum": codes},
                "type": {"enum": ["not_found_error", "invalid_request_error", "server_error"]}}}}},
    }


def _pull_schemas() -> dict:
    """Pulls, pushes and the files a repo offers."""
    return {
        "PullRequest": {"type": "object", "required": ["model"], "properties": {
            "model": {**STR, "pattern": REPO_ID, "maxLength": 230, "description": "owner/name or owner/name:QUANT"},
            "filename": {**STR, "pattern": r"\.(gguf|GGUF)$"}, "quant": {**STR, "pattern": "^[A-Za-z0-9_]{1,32}$"},
            "revision": STR, "stream": {"type": "boolean"},
            "verify": {"enum": ["checksum", "load"]}, "async": {"type": "boolean"},
            "replace": {"type": "boolean", "default": False, "description": "may replace a file of the same "
                        "name installed from another repo; without it such a pull is 409 name_conflict"}}},
        "PullEvent": {"oneOf": [_event_schema(kind) for kind in EVENT_TYPES]},
        "PushRequest": {"type": "object", "required": ["model", "target"], "properties": {
            "model": {**STR, "minLength": 1, "maxLength": 512, "description": "an installed model's id or file name"},
            "target": {**STR, "pattern": "^oci://", "maxLength": 512,
                       "description": "oci://host[:port]/repository:tag"},
            "stream": {"type": "boolean"}}},
        "PushEvent": {"oneOf": [_event_schema(kind) for kind in PUSH_EVENT_TYPES]},
        "PullSummary": {"allOf": [ref("PullEvent"), {"type": "object", "required": ["id", "model", "filename"],
                                                      "properties": {"id": STR, "model": STR,
                                                                     "filename": NULLABLE_STR}}]},
        "PullAccepted": {"type": "object", "required": ["id", "status", "status_url"],
                         "properties": {"id": STR, "status": STR, "status_url": STR}},
        "RemoteFile": {"type": "object", "required": ["filename", "size", "sha256", "quant", "split"], "properties": {
            "filename": STR, "size": {"type": ["integer", "null"]}, "sha256": NULLABLE_STR, "quant": NULLABLE_STR,
            "split": {"oneOf": [{"type": "null"}, {"type": "object", "required": ["index", "count"],
                                                   "properties": {"index": INT, "count": INT}}]}}},
        "Files": {"type": "object", "required": ["model", "revision", "files", "recommended"], "properties": {
            "model": STR, "revision": STR, "commit": STR, "recommended": NULLABLE_STR,
            "files": {"type": "array", "items": ref("RemoteFile")}}},
    }


def _model_schemas(codes: list[str]) -> dict:
    """Installed models, as this proxy, its peers and OpenAI clients see them; declared models and readiness."""
    return {
        "InstalledModel": {"type": "object", "required": INSTALLED_REQUIRED, "properties": {
            "id": STR, "filename": STR, "size": {"type": ["integer", "null"]}, "sha256": NULLABLE_STR,
            "repo": NULLABLE_STR, "revision": STR, "commit": STR, "source_host": STR, "pulled_at": STR,
            "intact": {"type": "boolean"}, "smoke_tested": {"type": "boolean"}, "restricted": {"type": "boolean"},
            "last_used": {**NULLABLE_STR, "description": "ISO 8601, UTC; null until recorded"},
            "details": ref("ModelDetails")}},
        "ModelDetails": MODEL_DETAILS,
        "PeerModelInfo": {"type": "object", "required": ["id", "sha", "siblings"], "properties": {
            "id": STR, "sha": STR, "siblings": {"type": "array", "items": {
                "type": "object", "required": ["rfilename", "size", "lfs"], "properties": {
                    "rfilename": STR, "size": INT, "lfs": {"type": "object", "required": ["sha256", "size"],
                                                           "properties": {"sha256": STR, "size": INT,
                                                                          "pointerSize": INT}}}}}}},
        "ModelList": {"type": "object", "required": ["object", "data"], "properties": {
            "object": {"const": "list"}, "data": {"type": "array", "items": {
                "type": "object", "required": ["id"], "properties": {"id": STR}}}}},
        "DeclaredModel": {"type": "object", "required": list(DECLARED), "properties": {
            "model": STR, "filename": NULLABLE_STR,
            "state": {"enum": ["ready", "queued", "pulling", "loading", "failed"]},
            "sha256": NULLABLE_STR, "revision": NULLABLE_STR, "error": NULLABLE_STR,
            "code": {"oneOf": [{"type": "null"}, {"enum": codes}]}}},
        "Manifest": {"type": "object", "required": ["ready", "models"], "properties": {
            "ready": {"type": "boolean"}, "models": {"type": "array", "items": ref("DeclaredModel")},
            "error": NULLABLE_STR,  # why the file as it is now is not in force (the last good entries are)
            "checked_at": NULLABLE_STR, "reconciled_at": NULLABLE_STR}},
        "NotReady": {"type": "object", "required": ["status", "backend", "not_ready"], "properties": {
            "status": {"const": "not_ready"}, "backend": {"type": "boolean"}, "not_ready": {"type": "array", "items": {
                "type": "object", "required": ["model", "filename", "state", "code"], "properties": {
                    "model": STR, "filename": NULLABLE_STR, "state": STR,
                    "code": {"oneOf": [{"type": "null"}, {"enum": codes}]}}}}}},
    }


def _delete_schemas() -> dict:
    return {
        "DeleteRequest": {"type": "object", "properties": {"filename": STR, "model": STR}},
        "Deleted": {"type": "object", "required": ["status", "files"], "properties": {
            "status": {"const": "deleted"}, "files": {"type": "array", "items": STR}}},
    }


def _paths() -> dict:
    ndjson = {"application/x-ndjson": {"schema": STR}}
    pull_ok = {"description": "NDJSON events, or with stream:false the final object",
               "content": {**ndjson, JSON: {"schema": ref("PullEvent")}}}
    query = lambda name, required: {"name": name, "in": "query", "required": required, "schema": STR}  # noqa: E731
    return {
        "/": {"get": _op("Service info", {"200": json_content(OBJ)})},
        "/v1/health": {"get": _op("Readiness: proxy and backend", {
            "200": json_content(OBJ, "both answer"), "503": json_content(ref("Error"), "the backend is down")})},
        "/livez": {"get": _op("Liveness of the proxy process", {"200": json_content(OBJ)})},
        "/v1/models": {"get": _op("OpenAI-style model list", {
            "200": json_content(ref("ModelList")), **_errors(schema="OpenAIError")})},
        "/v1/generate": _forwarded("Generate (backend /api/generate)", error_schema="Error"),
        "/v1/completions": _forwarded("OpenAI completions"),
        "/v1/chat/completions": _forwarded("OpenAI chat completions"),
        "/v1/api/pull": {"post": {**_op("Pull a GGUF model from the Hub", {
            "200": pull_ok, "202": json_content(ref("PullAccepted"), "async pull accepted"),
            **_errors(400, 401, 403, 404, 409, 422, 502, 504, 507)}, body=ref("PullRequest")), **GUARDED}},
        "/v1/api/push": {"post": {**_op("Push an installed model to an OCI registry (Docker Model Runner's layout)", {
            "200": {"description": "NDJSON events, or with stream:false the final object",
                    "content": {**ndjson, JSON: {"schema": ref("PushEvent")}}},
            **_errors(400, 401, 404, 502)}, body=ref("PushRequest")), **GUARDED}},
        "/v1/api/pulls": {"get": _op("Every pull this process knows", {"200": json_content({
            "type": "object", "required": ["pulls"], "properties": {
                "pulls": {"type": "array", "items": ref("PullSummary")}}})})},
        "/v1/api/pulls/{job_id}": {"get": _op("One pull", {"200": json_content(ref("PullSummary")), **_errors(404)},
                                              params=[{"name": "job_id", "in": "path", "required": True,
                                                       "schema": STR}])},
        "/v1/api/files": {"get": _op("GGUF files of a repo", {"200": json_content(ref("Files")),
                                                               **_errors(400, 403, 404, 502)},
                                     params=[query("model", True), query("revision", False)])},
        "/v1/api/delete": {"delete": {**_op("Delete an installed model", {
            "200": json_content(ref("Deleted")), **_errors(400, 401, 404, 409)}, body=ref("DeleteRequest")), **GUARDED}},
        "/v1/api/models": {"get": _op("Installed models with provenance", {"200": json_content({
            "type": "object", "required": ["models"], "properties": {
                "models": {"type": "array", "items": ref("InstalledModel")}}})})},
        "/v1/api/manifest": {"get": _op("The declared models (MODELS_MANIFEST) and the state of each", {
            "200": json_content(ref("Manifest"))})},
        "/v1/api/manifest/sync": {"post": {**_op("Reconcile with MODELS_MANIFEST now (the file is read again)", {
            "202": json_content({"type": "object", "required": ["status"], "properties": {"status": {"const": "syncing"}}},
                         "reconciliation started"), **_errors(401)}), **GUARDED}},
        "/readyz": {"get": _op("Readiness: the backend answers and every declared model is ready", {
            "200": json_content({"type": "object", "required": ["status"], "properties": {"status": {"const": "ready"}}}),
            "503": json_content(ref("NotReady"), "what is not ready")})},
        "/metrics": {"get": _op("Prometheus metrics", {"200": {
            "description": "Prometheus text", "content": {"text/plain": {"schema": STR}}}})},
        "/openapi.json": {"get": _op("This document", {"200": json_content(OBJ)})},
        **_peer_paths(),
        **openapi_ollama.paths(),
        **openapi_llama_server.paths(),
        **openapi_agents.paths(),
    }


def _peer_paths() -> dict:
    """The Hub's read-only protocol for the files this proxy holds (docs/api.md, Serving peers)."""
    path = lambda name: {"name": name, "in": "path", "required": True, "schema": STR}  # noqa: E731
    repo = [path("owner"), path("name")]
    info = _op("The Hub's model info for the files held of a repo", {
        "200": json_content(ref("PeerModelInfo")), **_errors()}, params=repo)
    info_at = {**info, "parameters": repo + [path("revision")]}
    octets = {"application/octet-stream": {"schema": {**STR, "format": "binary"}}}
    headers = {h: {"schema": STR} for h in ("ETag", "X-Linked-Etag", "X-Linked-Size", "X-Repo-Commit")}
    responses = {"200": {"description": "the file", "content": octets, "headers": headers},
                 "206": {"description": "the Range asked", "content": octets, "headers": headers},
                 "304": {"description": "not modified"}, "416": {"description": "range not satisfiable"},
                 **_errors()}
    params = repo + [path("revision"), path("filename")]
    tree = _op("The held files of a repo as the Hub's tree", {"200": json_content({"type": "array", "items": OBJ}),
                                                               **_errors()}, params=repo + [path("revision")])
    refs = _op("The branches held files were pulled at, as the Hub's refs (llama.cpp's -hf asks it)",
               {"200": json_content(OBJ), **_errors()}, params=repo)
    return {"/api/models/{owner}/{name}": {"get": info}, "/api/models/{owner}/{name}/tree/{revision}": {"get": tree},
            "/api/models/{owner}/{name}/refs": {"get": refs},
            "/api/models/{owner}/{name}/revision/{revision}": {"get": info_at},
            "/{owner}/{name}/resolve/{revision}/{filename}": {
                "get": _op("A held file's bytes, as the Hub's resolve", responses, params=params),
                "head": _op("A held file's headers, as the Hub's resolve", responses, params=params)}}


def build_openapi() -> dict:
    return {
        "openapi": "3.1.0",
        "info": {"title": "GGUF proxy sidecar", "version": VERSION,
                 "description": "Pulls verified GGUF models into MODELS_DIR and fronts the inference backend."},
        "components": {"schemas": _schemas(), "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "description": "PROXY_API_KEY, for pull and delete"}}},
        "paths": _paths(),
    }
