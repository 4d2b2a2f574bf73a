"""The stable error codes with their HTTP status, the error both processes raise, and the one JSON handler."""
from __future__ import annotations

import logging
from enum import StrEnum

from flask import Flask, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class ErrorCode(StrEnum):
    """Every code a client may see (docs/api.md's table and the few beyond it), with its HTTP status.

    Stream-only codes carry the status `stream:false` answers with. A member compares equal to its
    string, so `err.code == "model_busy"` holds.
    """

    status: int

    def __new__(cls, code: str, status: int) -> "ErrorCode":
        member = str.__new__(cls, code)
        member._value_ = code
        member.status = status
        return member

    INVALID_REQUEST = "invalid_request", 400
    BODY_TOO_LARGE = "body_too_large", 413
    INVALID_REPO_ID = "invalid_repo_id", 400
    UNSAFE_FILENAME = "unsafe_filename", 400
    NOT_GGUF = "not_gguf", 400
    AUTH_REQUIRED = "auth_required", 401
    REPO_NOT_ALLOWED = "repo_not_allowed", 403
    REPO_NOT_FOUND = "repo_not_found", 404
    GATED_REPO = "gated_repo", 403
    FILE_NOT_FOUND = "file_not_found", 404
    REVISION_NOT_FOUND = "revision_not_found", 404
    PULL_QUEUE_FULL = "pull_queue_full", 409
    MODEL_BUSY = "model_busy", 409
    NAME_CONFLICT = "name_conflict", 409
    PULL_STOPPED = "pull_stopped", 503
    MODEL_NOT_FOUND = "model_not_found", 404
    INSUFFICIENT_STORAGE = "insufficient_storage", 507
    CHECKSUM_MISMATCH = "checksum_mismatch", 502
    INVALID_GGUF = "invalid_gguf", 422
    SMOKE_TEST_FAILED = "smoke_test_failed", 422
    HUB_UNAVAILABLE = "hub_unavailable", 502
    HUB_TOKEN_REJECTED = "hub_token_rejected", 502
    BACKEND_UNAVAILABLE = "backend_unavailable", 502
    BACKEND_TIMEOUT = "backend_timeout", 504
    UNSUPPORTED_SOURCE = "unsupported_source", 400
    SOURCE_AUTH_FAILED = "source_auth_failed", 502
    # Beyond the contract's table.
    SERVER_BUSY = "server_busy", 503  # FORWARD_MAX_IN_FLIGHT requests are being forwarded already
    # The backend's: the file is there but llama.cpp cannot load it (not a GGUF, truncated, unknown
    # architecture): the request was well formed, the named model is not usable.
    MODEL_LOAD_FAILED = "model_load_failed", 422
    # The backend's: the model's memory estimate (weights + KV cache) exceeds MAX_MODEL_MEMORY on its own.
    MODEL_TOO_LARGE = "model_too_large", 507
    NOT_FOUND = "not_found", 404
    METHOD_NOT_ALLOWED = "method_not_allowed", 405
    INTERNAL_ERROR = "internal_error", 500
    # The command line's own (`error: <message> [<code>]`, exit status 3), never an HTTP answer; the status is
    # what the failure would be as one.
    PROXY_UNREACHABLE = "proxy_unreachable", 502  # no connection to the proxy
    CONNECTION_LOST = "connection_lost", 502  # the connection broke mid-pull or mid-push
    STREAM_ENDED = "stream_ended", 502  # the stream ended without its final line

    # What a code means to the code that handles it, declared here once (the sets below).

    @property
    def tries_next_source(self) -> bool:
        """A pull's download from a mirror that fails so goes on to the next source (the Hub last)."""
        return self in _NEXT_SOURCE

    @property
    def source_lacks_it(self) -> bool:
        """The source said it has no such repo or file: it is not broken, it does not cool down."""
        return self in _SOURCE_LACKS

    @property
    def bytes_were_wrong(self) -> bool:
        """The bytes that came were not the file's: nothing of them is kept to resume."""
        return self in _WRONG_BYTES

    @property
    def mirror_is_broken(self) -> bool:
        """A mirror answering a listing or a resolve so is broken, not lacking the repo: it cools down."""
        return self in _MIRROR_BROKEN

    @property
    def hub_lists_nothing(self) -> bool:
        """The Hub's listing failed so for this proxy: a mirror's listing is used instead, if one has it."""
        return self in _HUB_LISTS_NOTHING

    @property
    def peer_repo_miss(self) -> bool:
        """Upstream's answer that a peer is shown as the Hub's repo 404, so it moves on."""
        return self in _PEER_REPO_MISS

    @property
    def peer_file_miss(self) -> bool:
        """Upstream's answer that a peer is shown as the Hub's file 404, so it moves on."""
        return self in _PEER_FILE_MISS

    @property
    def queue_is_busy(self) -> bool:
        """The pull queue has no room for this pull now: a peer is told to ask again later."""
        return self in _QUEUE_BUSY

    @property
    def may_pass_later(self) -> bool:
        """A backend call that failed so may work when tried again (starting, restarting, busy)."""
        return self in _MAY_PASS_LATER


_NEXT_SOURCE = frozenset({ErrorCode.HUB_UNAVAILABLE, ErrorCode.CHECKSUM_MISMATCH, ErrorCode.INVALID_GGUF,
                          ErrorCode.FILE_NOT_FOUND, ErrorCode.REPO_NOT_FOUND})
_SOURCE_LACKS = frozenset({ErrorCode.FILE_NOT_FOUND, ErrorCode.REPO_NOT_FOUND})
_WRONG_BYTES = frozenset({ErrorCode.CHECKSUM_MISMATCH, ErrorCode.INVALID_GGUF})
_MIRROR_BROKEN = frozenset({ErrorCode.HUB_UNAVAILABLE, ErrorCode.HUB_TOKEN_REJECTED})
_HUB_LISTS_NOTHING = frozenset({ErrorCode.HUB_UNAVAILABLE, ErrorCode.GATED_REPO, ErrorCode.REPO_NOT_FOUND})
_PEER_REPO_MISS = frozenset({ErrorCode.REPO_NOT_FOUND, ErrorCode.GATED_REPO, ErrorCode.REVISION_NOT_FOUND,
                             ErrorCode.REPO_NOT_ALLOWED, ErrorCode.HUB_TOKEN_REJECTED})
_PEER_FILE_MISS = frozenset({ErrorCode.FILE_NOT_FOUND, ErrorCode.NOT_GGUF, ErrorCode.UNSAFE_FILENAME,
                             ErrorCode.NAME_CONFLICT, ErrorCode.INVALID_REQUEST})
_QUEUE_BUSY = frozenset({ErrorCode.PULL_QUEUE_FULL, ErrorCode.MODEL_BUSY})
_MAY_PASS_LATER = frozenset({ErrorCode.BACKEND_UNAVAILABLE, ErrorCode.BACKEND_TIMEOUT, ErrorCode.SERVER_BUSY,
                             ErrorCode.NOT_FOUND})

STATUS_BY_CODE: dict[str, int] = {code.value: code.status for code in ErrorCode}


def error_code(code: str) -> ErrorCode:
    """The member named by `code`.

    Raises:
        ValueError: `code` is not a member of ErrorCode (a typo would otherwise reach a client).
    """
    try:
        return ErrorCode(code)
    except ValueError:
        raise ValueError(f"{code!r} is not an error code; add it to core.errors.ErrorCode") from None


class ServiceError(Exception):
    """An error a client can act on: a stable `code`, its HTTP status and a message.

    Raises:
        ValueError: from the constructor, when `code` is not an ErrorCode.
    """

    def __init__(self, code: str, message: str, status: int | None = None, headers: dict[str, str] | None = None,
                 param: str | None = None):
        super().__init__(message)
        self.code = error_code(code)
        self.message = message
        self.status = status or self.code.status
        self.headers = headers or {}  # such as Retry-After
        self.param = param  # the request field at fault, where one is: OpenAI's errors name it

    def to_dict(self) -> dict:
        return error_body(self.code, self.message)


def error_body(code: str, message: str) -> dict:
    """docs/api.md's JSON error. Raises: ValueError when `code` is not an ErrorCode."""
    return {"status": "error", "error": message, "code": error_code(code)}


# OpenAI-compatible endpoints answer errors in OpenAI's shape, so SDKs show the message (docs/api.md).
OPENAI_PATHS = frozenset({"/v1/completions", "/v1/chat/completions", "/v1/models", "/v1/embeddings"})


def openai_error_body(code: str, message: str, status: int, param: str | None = None) -> dict:
    """OpenAI's error shape, with our stable code and the field at fault (`param`) where one is.

    Raises: ValueError when `code` is not an ErrorCode."""
    kind = "not_found_error" if status == 404 else "invalid_request_error" if status < 500 else "server_error"
    body = {"message": message, "type": kind, "code": error_code(code)}
    return {"error": {**body, "param": param} if param else body}


# Our own routes under /v1/ (docs/api.md's and Shimmy's) answer in docs/api.md's shape; any other path under /v1/ is
# OpenAI's namespace, where an SDK asking for what we lack (/v1/foo) must still be shown the reason.
OWN_V1_PREFIXES = ("/v1/api/", "/v1/generate", "/v1/health")


def is_openai_path(path: str) -> bool:
    """Whether errors on `path` answer in OpenAI's shape: its endpoints, and unknown paths under /v1/."""
    return path in OPENAI_PATHS or (path.startswith("/v1/") and not path.startswith(OWN_V1_PREFIXES))


# The proxy's Ollama API (docs/api.md, Ollama-compatible API) answers `{"error": message}` on every /api/* path,
# unknown ones included, except the Hub's protocol it serves to peers (/api/models/...). The backend's /api/*
# are Shimmy's, in docs/api.md's shape: an app opts in with this config key.
OLLAMA_ERRORS_CONFIG = "OLLAMA_ERRORS"


def is_ollama_path(path: str) -> bool:
    """Whether errors on `path` answer in Ollama's shape (on an app with OLLAMA_ERRORS_CONFIG set)."""
    return path.startswith("/api/") and not path.startswith("/api/models/") \
        and bool(current_app.config.get(OLLAMA_ERRORS_CONFIG))


# Anthropic's Messages API on the proxy (/v1/messages, /v1/messages/count_tokens) answers in Anthropic's shape, so
# the `anthropic` SDK raises the class of the status and shows the message; `type` as Anthropic names it.
ANTHROPIC_PREFIX = "/v1/messages"
ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                   404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
                   503: "overloaded_error", 529: "overloaded_error"}


def anthropic_error_body(message: str, status: int) -> dict:
    """Anthropic's error shape, `{"type": "error", "error": {"type", "message"}}`, for an HTTP status."""
    kind = ANTHROPIC_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def _error_answer(code: str, message: str, status: int, headers: dict | None = None, param: str | None = None):
    """The JSON error for this request's endpoint: OpenAI's shape on OpenAI's paths, docs/api.md's elsewhere."""
    if is_ollama_path(request.path):
        return jsonify(error=message), status, headers or {}
    if request.path.startswith(ANTHROPIC_PREFIX):
        return jsonify(anthropic_error_body(message, status)), status, headers or {}
    openai = is_openai_path(request.path)
    body = openai_error_body(code, message, status, param) if openai else error_body(code, message)
    return jsonify(body), status, headers or {}


def _body_limit_message() -> str:
    """Werkzeug's 413 says "exceeds the capacity limit" without the limit: this says it."""
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    if not limit:
        return "the request body is too large"
    size = f"{limit // 1048576} MiB" if limit % 1048576 == 0 else f"{limit} bytes"
    return f"the request body is over the {size} limit ({limit} bytes)"


def register_error_handlers(app: Flask, service: str = "proxy") -> None:
    """Every error, ours, werkzeug's or unexpected, answers as docs/api.md's JSON error (in both processes)."""

    @app.errorhandler(ServiceError)
    def _service_error(err: ServiceError):
        return _error_answer(err.code, err.message, err.status, err.headers, err.param)

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException):
        status = err.code or 500
        code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(
            status, "invalid_request" if 400 <= status < 500 else "internal_error"
        )
        message = _body_limit_message() if code == "body_too_large" else err.description or err.name
        return _error_answer(code, message, status)

    @app.errorhandler(Exception)
    def _unexpected(err: Exception):
        log.exception("unhandled error")
        return _error_answer("internal_error", f"internal error; see the {service}'s log", 500)
