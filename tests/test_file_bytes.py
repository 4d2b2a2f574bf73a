"""Peer file serving hands the WSGI server's file wrapper the file at the range's start (gunicorn sends it
with sendfile), and answers Range, If-Range and If-None-Match as the Hub's CDN does."""
from __future__ import annotations

import pytest
from flask import Flask

from proxy.routes.file_bytes import file_response

DATA = bytes(range(256)) * 64  # 16 KiB
ETAG = "a" * 64


class RecordingWrapper:
    """What gunicorn's wsgi.file_wrapper is given: it sends Content-Length bytes from the file's position."""

    def __init__(self, handle, block_size):
        self.handle, self.block_size = handle, block_size
        self.position = handle.tell()

    def __iter__(self):
        raise AssertionError("gunicorn sends the file itself; the app must not iterate it")

    def close(self):
        self.handle.close()


@pytest.fixture()
def served(tmp_path):
    path = tmp_path / "model.gguf"
    path.write_bytes(DATA)
    app = Flask(__name__)

    def get(headers=None, wrapper=None, method="GET"):
        environ = {"wsgi.file_wrapper": wrapper} if wrapper else {}
        with app.test_request_context("/", method=method, headers=headers or {}, environ_base=environ):
            response = file_response(path, ETAG)
            body = response.response
            content = b"" if isinstance(body, RecordingWrapper) else b"".join(response.iter_encoded())
            response.close()
            return response, body, content

    return get


def test_a_range_goes_to_the_servers_file_wrapper_positioned_at_its_start(served):
    response, body, _ = served({"Range": "bytes=1000-4999"}, wrapper=RecordingWrapper)
    assert response.status_code == 206
    assert isinstance(body, RecordingWrapper) and body.position == 1000
    assert response.content_length == 4000
    assert response.headers["Content-Range"] == f"bytes 1000-4999/{len(DATA)}"


def test_the_whole_file_goes_to_the_file_wrapper_from_byte_zero(served):
    response, body, _ = served(wrapper=RecordingWrapper)
    assert response.status_code == 200 and body.position == 0 and response.content_length == len(DATA)
    assert response.headers["ETag"] == f'"{ETAG}"' and response.headers["Accept-Ranges"] == "bytes"


@pytest.mark.parametrize(("headers", "status", "content"), [
    ({}, 200, DATA),
    ({"Range": "bytes=1000-"}, 206, DATA[1000:]),
    ({"Range": "bytes=-10"}, 206, DATA[-10:]),
    ({"Range": "bytes=0-0"}, 206, DATA[:1]),
    ({"Range": "bytes=10-20,30-40"}, 200, DATA),  # several ranges: the whole file, as HTTP allows
    ({"Range": "lines=1-2"}, 200, DATA),  # not bytes: ignored
    ({"Range": "bytes=5-", "If-Range": f'"{ETAG}"'}, 206, DATA[5:]),
    ({"Range": "bytes=5-", "If-Range": '"another-version"'}, 200, DATA),
])
def test_ranges_without_a_file_wrapper_send_exactly_the_bytes_asked(served, headers, status, content):
    response, _, body = served(headers)
    assert (response.status_code, body) == (status, content)
    assert response.content_length == len(content)


def test_a_range_past_the_end_is_416_naming_the_size(served):
    response, _, body = served({"Range": f"bytes={len(DATA)}-"})
    assert response.status_code == 416 and body == b""
    assert response.headers["Content-Range"] == f"bytes */{len(DATA)}"


def test_a_matching_if_none_match_is_304_without_a_body(served):
    response, _, body = served({"If-None-Match": f'"{ETAG}"'})
    assert response.status_code == 304 and body == b""
    assert served({"If-None-Match": '"other"'})[0].status_code == 200
