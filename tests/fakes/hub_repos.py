"""The fake Hub's content: repos made of commits, each a map of path -> blob (bytes or a file on disk)."""
from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping, Union

FileContent = Union[bytes, Path]

# What a default .gitattributes on the Hub puts in LFS, plus the Hub's own rule that files over 10 MB must be LFS.
LFS_SUFFIXES = (".gguf", ".bin", ".safetensors", ".pt", ".pth", ".ckpt", ".onnx", ".h5", ".msgpack", ".zip", ".tar")
LFS_MIN_BYTES = 10 * 1000 * 1000
HASH_CHUNK_BYTES = 4 * 1024 * 1024

_sha256_cache: dict[tuple[str, int, int], str] = {}
_sha256_cache_lock = threading.Lock()


@dataclass(frozen=True)
class Blob:
    """One file's content: in memory (`data`) or on disk (`path`, streamed), with its hashes."""

    size: int
    sha256: str
    git_oid: str  # what git (and the Hub's `oid`/`blobId`) calls the blob: of the pointer file when LFS
    lfs: bool
    data: bytes | None = None
    path: Path | None = None
    size_lie: int | None = None  # the size the Hub's metadata reports instead of `size` (FakeHub.misreport_size)

    @property
    def listed_size(self) -> int:
        """The size listings and X-Linked-Size give; the bytes served are still `size`."""
        return self.size if self.size_lie is None else self.size_lie

    @property
    def pointer_size(self) -> int:
        return len(lfs_pointer(self.sha256, self.size))


@dataclass
class Commit:
    sha: str
    files: dict[str, Blob]
    title: str
    date: datetime
    listings: dict = field(default_factory=dict, repr=False, compare=False)  # tree listings, for paging


@dataclass
class Repo:
    repo_id: str
    private: bool = False
    gated: bool | str = False  # False, "auto" or "manual", as the Hub's `gated` field
    readers: set[str] = field(default_factory=set)  # tokens that may read a private repo
    approved: set[str] = field(default_factory=set)  # tokens approved for a gated repo
    tags_meta: list[str] = field(default_factory=list)  # model tags (the `tags` field), not git tags
    branches: dict[str, str] = field(default_factory=dict)  # name -> commit sha
    git_tags: dict[str, str] = field(default_factory=dict)  # name -> commit sha
    commits: dict[str, Commit] = field(default_factory=dict)
    created: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    lists_siblings: bool = True  # False: model info without `siblings`, as some mirrors answer

    def resolve(self, revision: str) -> Commit | None:
        """The commit a branch, tag, `refs/heads/x`, `refs/tags/x` or full commit id names, or None."""
        for prefix, refs in (("refs/heads/", self.branches), ("refs/tags/", self.git_tags)):
            if revision.startswith(prefix):
                sha = refs.get(revision[len(prefix):])
                return self.commits.get(sha) if sha else None
        sha = self.branches.get(revision) or self.git_tags.get(revision) or revision
        return self.commits.get(sha)

    @property
    def head(self) -> Commit:
        return self.commits[self.branches["main"]]


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def file_sha256(path: Path) -> str:
    """sha256 of a file on disk, read in chunks and cached by (path, size, mtime)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _sha256_cache_lock:
        if key in _sha256_cache:
            return _sha256_cache[key]
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    with _sha256_cache_lock:
        _sha256_cache[key] = digest.hexdigest()
    return digest.hexdigest()


def make_blob(name: str, content: FileContent, lfs: bool | None = None) -> Blob:
    """A Blob for `content`; LFS by suffix or size unless `lfs` says otherwise."""
    if isinstance(content, os.PathLike):
        content = Path(content)
    size = content.stat().st_size if isinstance(content, Path) else len(content)
    if lfs is None:
        lfs = name.lower().endswith(LFS_SUFFIXES) or size >= LFS_MIN_BYTES
    if isinstance(content, Path):
        if not lfs:  # small git files: read once, they are tiny
            return make_blob(name, content.read_bytes(), lfs=False)
        sha256 = file_sha256(content)
        return Blob(size, sha256, git_blob_oid(lfs_pointer(sha256, size)), True, path=content)
    sha256 = hashlib.sha256(content).hexdigest()
    oid = git_blob_oid(lfs_pointer(sha256, size)) if lfs else git_blob_oid(content)
    return Blob(size, sha256, oid, lfs, data=bytes(content))


def make_commit_sha(repo_id: str, parent: str | None, files: Mapping[str, Blob], serial: int) -> str:
    digest = hashlib.sha1(f"{repo_id}\n{parent}\n{serial}\n".encode())
    for name in sorted(files):
        digest.update(f"{name}\0{files[name].git_oid}\n".encode())
    return digest.hexdigest()


def tree_oid(prefix: str, files: Mapping[str, Blob]) -> str:
    """A stable stand-in for a git tree id of the folder `prefix`."""
    digest = hashlib.sha1(prefix.encode())
    for name in sorted(n for n in files if n.startswith(prefix + "/")):
        digest.update(f"{name}\0{files[name].git_oid}\n".encode())
    return digest.hexdigest()


def list_tree(files: Mapping[str, Blob], folder: str, recursive: bool) -> list[tuple[str, str]] | None:
    """Entries under `folder` as (kind, path), folders first as the Hub does; None if `folder` is absent."""
    prefix = f"{folder}/" if folder else ""
    names = [n for n in sorted(files) if n.startswith(prefix)]
    if folder and not names:
        return None
    folders: set[str] = set()
    entries: list[tuple[str, str]] = []
    for name in names:
        parts = name[len(prefix):].split("/")
        for depth in range(1, len(parts) if recursive else min(len(parts), 2)):
            folders.add(prefix + "/".join(parts[:depth]))
        if recursive or len(parts) == 1:
            entries.append(("file", name))
    return [("directory", f) for f in sorted(folders)] + entries


class RepoStore:
    """All repos of the fake Hub; safe to change while the server serves."""

    def __init__(self) -> None:
        self._repos: dict[str, Repo] = {}
        self._lock = threading.Lock()
        self._serial = 0

    def get(self, repo_id: str) -> Repo | None:
        return self._repos.get(repo_id)

    def add_repo(self, repo: Repo, files: Mapping[str, FileContent], lfs_files: set[str] | None) -> str:
        with self._lock:
            if repo.repo_id in self._repos:
                raise ValueError(f"repo {repo.repo_id} already exists")
            self._repos[repo.repo_id] = repo
        return self.add_commit(repo.repo_id, files, branch="main", lfs_files=lfs_files, replace=True)

    def add_commit(
        self,
        repo_id: str,
        files: Mapping[str, FileContent | None],
        *,
        branch: str = "main",
        replace: bool = False,
        lfs_files: set[str] | None = None,
        title: str = "Upload files",
    ) -> str:
        """Commit `files` on `branch` (created from main if new); None deletes a path. Returns the commit sha."""
        blobs = {
            name: make_blob(name, content, None if lfs_files is None else name in lfs_files)
            for name, content in files.items()
            if content is not None
        }
        with self._lock:
            repo = self._repos[repo_id]
            parent = repo.branches.get(branch) or repo.branches.get("main")
            merged = {} if replace or parent is None else dict(repo.commits[parent].files)
            merged.update(blobs)
            for name in [n for n, c in files.items() if c is None]:
                merged.pop(name, None)
            self._serial += 1
            sha = make_commit_sha(repo_id, parent, merged, self._serial)
            repo.commits[sha] = Commit(sha, merged, title, datetime.now(timezone.utc))
            repo.branches[branch] = sha
            return sha

    def add_tag(self, repo_id: str, tag: str, revision: str = "main") -> str:
        with self._lock:
            repo = self._repos[repo_id]
            commit = repo.resolve(revision)
            if commit is None:
                raise ValueError(f"unknown revision {revision!r} of {repo_id}")
            repo.git_tags[tag] = commit.sha
            return commit.sha

    def find_blob(self, repo_id: str, sha256: str) -> tuple[Blob, list[str]] | None:
        """The LFS blob with this sha256 in any commit of the repo, and the paths it is stored under."""
        repo = self._repos.get(repo_id)
        if repo is None:
            return None
        found: Blob | None = None
        names: set[str] = set()
        for commit in list(repo.commits.values()):
            for name, blob in list(commit.files.items()):
                if blob.lfs and blob.sha256 == sha256:
                    found = blob
                    names.add(name)
        return (found, sorted(names)) if found else None
