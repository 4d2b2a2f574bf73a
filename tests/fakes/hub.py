"""A Hugging Face Hub-compatible fake server for tests and benchmarks, with fault knobs.

In a test:

    with FakeHub(tokens={"hf_ok"}) as hub:
        sha = hub.add_repo("owner/name", files={"m.Q4_K_M.gguf": b"GGUF..."})
        hub.faults.add(Fault.drop(after_bytes=1000), file="m.Q4_K_M.gguf")
        hf_hub_download("owner/name", "m.Q4_K_M.gguf", endpoint=hub.url, token=False)

As a process: python -m tests.fakes.hub --port N --repo owner/name=/dir [--throttle-bps B]
The API answers on http://127.0.0.1:PORT (hub.url); LFS files redirect to signed URLs on
http://localhost:PORT/cdn-lfs/... (hub.cdn_url), another host name so clients drop the token.
"""
from __future__ import annotations

import argparse
import dataclasses
import secrets
import signal
import sys
import threading
from pathlib import Path
from typing import Iterable, Mapping

from tests.fakes.hub_faults import Fault, FaultBook, RequestLog, RequestRecord
from tests.fakes.hub_handler import HubHTTPServer
from tests.fakes.hub_repos import Blob, FileContent, Repo, RepoStore
from tests.fakes.hub_routes import HubConfig

__all__ = ["FakeHub", "Fault", "RequestRecord"]


class FakeHub:
    """Hub API, /resolve and CDN on one threaded HTTP/1.1 server; start() or use as a context manager."""

    def __init__(
        self,
        port: int = 0,
        *,
        host: str = "127.0.0.1",
        cdn_host: str = "localhost",
        tokens: Iterable[str] = (),
        throttle_bps: int | None = None,
        cdn_url_ttl_s: float = 3600.0,
    ) -> None:
        self.store = RepoStore()
        self.faults = FaultBook()
        self.log = RequestLog()
        self.throttle_bps = throttle_bps  # bytes a second per response (so per connection); None: unthrottled
        self.stopping = threading.Event()
        self.host, self.cdn_host, self._port = host, cdn_host, port
        self.config = HubConfig(self.store, set(tokens), "", secrets.token_bytes(16), cdn_url_ttl_s)
        self._server: HubHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> FakeHub:
        self._server = HubHTTPServer((self.host, self._port), self)
        self._port = self._server.server_address[1]
        self.config.cdn_base = f"http://{self.cdn_host}:{self._port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-hub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop serving, ending stalled and idle keep-alive connections too."""
        if self._server is None:
            return
        self.stopping.set()
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()
        self._server.join_threads(timeout_s)
        self._thread.join(timeout_s)
        self._server = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """The endpoint to give clients (HfApi(endpoint=...), HF_ENDPOINT)."""
        return f"http://{self.host}:{self._port}"

    @property
    def cdn_url(self) -> str:
        return self.config.cdn_base

    @property
    def tokens(self) -> set[str]:
        """Tokens the Hub knows; any other Bearer token gets 401 "Invalid credentials..."."""
        return self.config.tokens

    # --- content ---------------------------------------------------------------------------------

    def add_repo(
        self,
        repo_id: str,
        files: Mapping[str, FileContent],
        *,
        private: bool = False,
        gated: bool | str = False,
        readers: Iterable[str] = (),
        approved: Iterable[str] = (),
        branches: Mapping[str, Mapping[str, FileContent | None]] | None = None,
        tags: Mapping[str, str] | None = None,
        model_tags: Iterable[str] = ("gguf",),
        lfs_files: Iterable[str] | None = None,
    ) -> str:
        """Add a model repo whose main holds `files`; returns main's commit sha.

        `readers`: tokens that may see a private repo; `approved`: tokens let into a gated one (both
        become known tokens). `gated` is False, True ("auto"), "auto" or "manual". `branches` maps a
        branch name to file changes committed on top of main (None deletes a path); `tags` maps a tag
        to a branch or commit. `lfs_files` lists the LFS paths (default: by suffix such as .gguf, or
        size >= 10 MB). A Path value is served from disk; its sha256 is computed once here.
        """
        readers, approved = set(readers), set(approved)
        self.tokens.update(readers | approved)
        repo = Repo(repo_id, private, "auto" if gated is True else gated, readers, approved, list(model_tags))
        sha = self.store.add_repo(repo, files, None if lfs_files is None else set(lfs_files))
        for branch, changes in (branches or {}).items():
            self.add_commit(repo_id, changes, branch=branch, lfs_files=lfs_files)
        for tag, revision in (tags or {}).items():
            self.store.add_tag(repo_id, tag, revision)
        return sha

    def add_commit(
        self,
        repo_id: str,
        files: Mapping[str, FileContent | None],
        *,
        branch: str = "main",
        replace: bool = False,
        lfs_files: Iterable[str] | None = None,
        title: str = "Upload files",
    ) -> str:
        """Commit changes (None deletes; `replace` drops what is not listed) on `branch`; returns the sha."""
        lfs = None if lfs_files is None else set(lfs_files)
        return self.store.add_commit(repo_id, files, branch=branch, replace=replace, lfs_files=lfs, title=title)

    def add_tag(self, repo_id: str, tag: str, revision: str = "main") -> str:
        return self.store.add_tag(repo_id, tag, revision)

    def repo(self, repo_id: str) -> Repo:
        """The live Repo (private, gated, readers, approved, branches, git_tags can be changed)."""
        repo = self.store.get(repo_id)
        if repo is None:
            raise KeyError(repo_id)
        return repo

    def commit_sha(self, repo_id: str, revision: str = "main") -> str:
        commit = self.repo(repo_id).resolve(revision)
        if commit is None:
            raise KeyError(revision)
        return commit.sha

    def blob(self, repo_id: str, path: str, revision: str = "main") -> Blob:
        """A file's Blob: size, sha256, git_oid, lfs."""
        commit = self.repo(repo_id).resolve(revision)
        if commit is None:
            raise KeyError(revision)
        return commit.files[path]

    def misreport_size(self, repo_id: str, path: str, size: int, revision: str = "main") -> None:
        """Make the Hub's metadata (listings, X-Linked-Size) say `size` for a file whose bytes stay as they
        are: a Hub that lies about a size, or reports an impossible one such as -5."""
        commit = self.repo(repo_id).resolve(revision)
        if commit is None:
            raise KeyError(revision)
        commit.files[path] = dataclasses.replace(commit.files[path], size_lie=size)

    def resolve_url(self, repo_id: str, path: str, revision: str = "main") -> str:
        return f"{self.url}/{repo_id}/resolve/{revision}/{path}"

    def cdn_path(self, repo_id: str, path: str, revision: str = "main") -> str:
        """The CDN URL path (no host, no query) an LFS file redirects to: a prefix for the log helpers."""
        return f"/cdn-lfs/{repo_id}/{self.blob(repo_id, path, revision).sha256}"

    # --- request log -----------------------------------------------------------------------------

    def requests(self) -> list[RequestRecord]:
        return self.log.records()

    def requests_to(
        self, path_prefix: str = "", *, method: str | None = None, place: str | None = None
    ) -> list[RequestRecord]:
        """Logged requests whose path starts with `path_prefix`, optionally of one method and place."""
        return [
            r for r in self.log.records()
            if r.path.startswith(path_prefix) and method in (None, r.method) and place in (None, r.place)
        ]

    def bytes_served(self, path_prefix: str = "") -> int:
        """Body bytes sent (so far) to requests whose path starts with `path_prefix`."""
        return sum(r.body_bytes for r in self.requests_to(path_prefix))

    def wait_for_responses(self, path_prefix: str = "", timeout_s: float = 5.0) -> list[RequestRecord]:
        """Logged requests whose path starts with `path_prefix`, once each response has ended (at most
        `timeout_s`): a client can see a response end (a drop, a reset) before the server has."""
        return self.log.wait_done(path_prefix, timeout_s)

    def connections(self, path_prefix: str = "") -> int:
        """Distinct client connections (client ports) that asked for paths starting with `path_prefix`."""
        return len({r.client_port for r in self.requests_to(path_prefix)})

    def clear_log(self) -> None:
        self.log.clear()


def dir_files(folder: Path) -> dict[str, Path]:
    """Every file under `folder` (not .git), keyed by its posix path relative to it."""
    return {
        path.relative_to(folder).as_posix(): path
        for path in sorted(folder.rglob("*"))
        if path.is_file() and ".git" not in path.relative_to(folder).parts
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve folders as Hub model repos (a fake huggingface.co).")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--cdn-host", default="localhost")
    parser.add_argument("--repo", action="append", default=[], metavar="OWNER/NAME=DIR",
                        help="serve every file under DIR (or one file) as a public repo; repeatable")
    parser.add_argument("--token", action="append", default=[], help="a token the Hub accepts")
    parser.add_argument("--throttle-bps", type=int, default=None, help="bytes a second per connection")
    args = parser.parse_args(argv)
    hub = FakeHub(args.port, host=args.host, cdn_host=args.cdn_host, tokens=args.token,
                  throttle_bps=args.throttle_bps)
    for spec in args.repo:
        repo_id, _, location = spec.partition("=")
        source = Path(location)
        hub.add_repo(repo_id, dir_files(source) if source.is_dir() else {source.name: source})
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    with hub:
        print(f"fake hub ready on {hub.url} (cdn {hub.cdn_url})", flush=True)
        while not done.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
