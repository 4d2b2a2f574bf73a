"""Bodies from outside (registries, mirrors, token realms) read through a size cap before anything parses them,
so a larger or endless body fails that source instead of growing the proxy's memory (docs/api.md, Sources)."""
from __future__ import annotations

import json
import threading
from typing import Any, Iterator

import httpx2
import requests
import urllib3
from huggingface_hub.utils import _http as hf_http

from proxy.errors import ErrorCode, ProxyError

KiB, MiB = 1024, 1024 * 1024
MANIFEST_MAX_BYTES = 4 * MiB
LISTING_MAX_BYTES = 1 * MiB
TOKEN_MAX_BYTES = 1 * MiB
ERROR_MAX_BYTES = 64 * KiB  # an error body: only its codes are read
_READ_BYTES = 64 * KiB


def read_capped(response: requests.Response, max_bytes: int, what: str) -> bytes:
    """The body of a response opened with `stream=True`, at most `max_bytes`; the connection is closed after.

    Raises:
        ProxyError: hub_unavailable when the body is larger (it is not read further) or the connection fails.
    """
    declared = response.headers.get("Content-Length", "")
    chunks, count = [], 0
    try:
        if declared.isdigit() and int(declared) > max_bytes:
            raise _too_large(what, max_bytes)
        while block := response.raw.read(_READ_BYTES, decode_content=True):
            count += len(block)
            if count > max_bytes:
                raise _too_large(what, max_bytes)
            chunks.append(block)
    except (urllib3.exceptions.HTTPError, OSError) as err:
        raise ProxyError(ErrorCode.HUB_UNAVAILABLE, f"{what} could not be read ({type(err).__name__})") from err
    finally:
        response.close()
    return b"".join(chunks)


def json_capped(response: requests.Response, max_bytes: int, what: str) -> Any:
    """The body as JSON, read through the cap; None when it is not JSON (or nested past what Python parses).

    Raises:
        ProxyError: hub_unavailable (too large, or the connection failed).
    """
    return parse_json(read_capped(response, max_bytes, what))


def parse_json(content: bytes) -> Any:
    """JSON of bytes from outside; None for what does not parse, however it fails to."""
    try:
        return json.loads(content)
    except (ValueError, RecursionError):
        return None


class BodyTooLarge(ValueError):
    """A body from outside went past its cap while huggingface_hub read it (a ValueError: a source answering
    what is not the Hub's API, which proxy/sources/huggingface.py turns into hub_unavailable)."""


class _CappedStream(httpx2.SyncByteStream):
    def __init__(self, stream: httpx2.SyncByteStream, max_bytes: int):
        self._stream, self._max_bytes = stream, max_bytes

    def __iter__(self) -> Iterator[bytes]:
        count = 0
        for chunk in self._stream:
            count += len(chunk)
            if count > self._max_bytes:
                raise BodyTooLarge(f"an API body larger than {self._max_bytes // KiB} KiB")
            yield chunk

    def close(self) -> None:
        self._stream.close()


def _cap_api_body(response: httpx2.Response) -> None:
    """huggingface_hub's response hook: a Hub API body (model info, a tree page) is read through the cap."""
    if "/api/" in response.request.url.path:
        response.stream = _CappedStream(response.stream, LISTING_MAX_BYTES)


_capped = threading.Lock()


def cap_hub_api_bodies() -> None:
    """Have huggingface_hub's client (one per process, shared by HF_ENDPOINT and HF_MIRRORS alike) read API
    bodies through LISTING_MAX_BYTES; its transport, proxies included, stays its own. Once per process."""
    with _capped:
        if getattr(hf_http, "_proxy_caps_api_bodies", False):
            return

        def factory() -> httpx2.Client:
            client = hf_http.default_client_factory()
            client.event_hooks["response"] = [*client.event_hooks["response"], _cap_api_body]
            return client

        hf_http.set_client_factory(factory)
        hf_http._proxy_caps_api_bodies = True


def _too_large(what: str, max_bytes: int) -> ProxyError:
    return ProxyError(ErrorCode.HUB_UNAVAILABLE, f"{what} is larger than {max_bytes // KiB} KiB; not read further")
