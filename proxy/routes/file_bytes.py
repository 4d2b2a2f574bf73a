"""A file's bytes, whole or one byte range, handed to the WSGI server's file wrapper.

Under gunicorn that wrapper is sent with sendfile(2) from the file's current position for Content-Length
bytes, so a 16 MiB range costs the proxy no Python loop (werkzeug's send_file serves every Range through one,
8 KiB at a time). Where the server has no file wrapper, a bounded generator reads the same bytes.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import BinaryIO, Iterator

from flask import Response, request
from werkzeug.datastructures import ContentRange
from werkzeug.http import parse_range_header, unquote_etag

BLOCK_BYTES = 1024 * 1024
# `bytes=-0`: a well-formed suffix range of no bytes, which no file satisfies (RFC 9110, 14.1.2); werkzeug
# takes it for a malformed header (a whole-file 200).
_EMPTY_SUFFIX_RE = re.compile(r"bytes\s*=\s*-0+\s*")


def file_response(path: Path, etag: str) -> Response:
    """`path` with a strong `etag`: 200 whole, 206 for one satisfiable range, 416 for an unsatisfiable one,
    304 for a matching If-None-Match. A malformed or multi-part Range, or an If-Range naming another
    version, gets the whole file, as HTTP allows.

    Raises:
        OSError: the file cannot be opened.
    """
    handle = open(path, "rb")  # noqa: SIM115 - closed by the response (or below)
    try:
        size = os.fstat(handle.fileno()).st_size
        span = _requested_span(size, etag)
        if span == "unsatisfiable":
            handle.close()
            response = Response(status=416)
            response.content_range = ContentRange("bytes", None, None, size)
            return response
        if span is None and request.if_none_match.contains(etag):
            handle.close()
            response = Response(status=304)
            response.set_etag(etag)
            return response
        start, stop = span or (0, size)
        handle.seek(start)
        wrapper = request.environ.get("wsgi.file_wrapper")
        body = wrapper(handle, BLOCK_BYTES) if wrapper is not None else _read(handle, stop - start)
        response = Response(body, 206 if span else 200, mimetype="application/octet-stream",
                            direct_passthrough=True)
    except BaseException:
        handle.close()
        raise
    response.content_length = stop - start
    if span:
        response.content_range = ContentRange("bytes", start, stop, size)
    response.set_etag(etag)
    response.accept_ranges = "bytes"
    return response


def _requested_span(size: int, etag: str) -> tuple[int, int] | str | None:
    """(start, stop) of the one range asked, "unsatisfiable", or None for the whole file."""
    header = request.headers.get("Range")
    if_range = request.headers.get("If-Range")
    if not header or (if_range and unquote_etag(if_range)[0] != etag):
        return None
    if _EMPTY_SUFFIX_RE.fullmatch(header):
        return "unsatisfiable"
    ranges = parse_range_header(header)
    if ranges is None or ranges.units != "bytes" or len(ranges.ranges) != 1:
        return None
    return ranges.range_for_length(size) or "unsatisfiable"


def _read(handle: BinaryIO, count: int) -> Iterator[bytes]:
    with handle:
        while count > 0 and (block := handle.read(min(BLOCK_BYTES, count))):
            count -= len(block)
            yield block
