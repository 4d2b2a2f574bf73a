"""Pull, list and delete GGUF models through a running proxy (--url), or straight in MODELS_DIR (--local)."""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from typing import Iterable, Mapping

import requests

from proxy.cli.exits import (EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, CliError,
                             epilog)
from proxy.cli.progress import PullProgress, format_bytes
from proxy.errors import ErrorCode, ProxyError
from proxy.pulls.request import PullRequest, parse_pull_request

CONNECT_TIMEOUT_S = 10.0
REQUEST_TIMEOUT_S = 60.0  # ls and rm; a pull stream may stay quiet for long while it is queued
STOP_WAIT_S = 10.0  # --local and Ctrl-C: time for the transfer to save its progress
# A bare `name[:tag]` is how Ollama names models (`gemma3:270m`); a Hub repo id always has an owner.
OLLAMA_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*(:[A-Za-z0-9._-]+)?$")


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    args = build_parser(env).parse_args(argv)
    args.env = env
    try:
        return args.run(args)
    except CliError as err:
        print(f"error: {err.message}" + (f" [{err.code}]" if err.code else ""), file=sys.stderr)
        return err.exit_status
    except KeyboardInterrupt:
        print(interrupted_message(args), file=sys.stderr)
        return EXIT_INTERRUPTED


def interrupted_message(args: argparse.Namespace) -> str:
    """What Ctrl-C leaves behind: a proxy's pull goes on without us; a --local pull stops and resumes next time."""
    if args.command != "pull":
        return "interrupted"
    if args.local:
        return ("interrupted: the pull stopped; what it downloaded stays in MODELS_DIR and the same command "
                "resumes it")
    return (f"interrupted: the proxy at {args.url} keeps downloading {args.model}; see GET {args.url}/v1/api/pulls, "
            "or run the same command again to follow it")


def build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    where = common.add_argument_group("where")
    where.add_argument("--url", default=env.get("PROXY_URL") or "http://127.0.0.1:8080",
                       help="a running proxy (default: $PROXY_URL or %(default)s)")
    where.add_argument("--api-key", default=env.get("PROXY_API_KEY") or None,
                       help="bearer token for pull and rm (default: $PROXY_API_KEY)")
    where.add_argument("--local", action="store_true", help="no proxy: work on MODELS_DIR directly")
    where.add_argument("--models-dir", default=None, help="with --local (default: $MODELS_DIR)")
    parser = argparse.ArgumentParser(prog="gguf-proxy", description=__doc__,
                                     epilog="COMMAND --help lists the command's options and exit statuses.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    pull = _command(commands, "pull", "download a GGUF model from the Hub or a registry", common)
    pull.add_argument("model", metavar="REPO[:QUANT]", help="Hub repo id, e.g. owner/name or owner/name:Q8_0, or "
                      "a registry reference: ollama://gemma3:270m, oci://host/repository:tag")
    pull.add_argument("filename", metavar="FILE", nargs="?", help="the GGUF file in the repo (default: by quant)")
    pull.add_argument("--revision", default=None, help="branch, tag or commit (default: main)")
    pull.add_argument("--verify", choices=("checksum", "load"), default="checksum",
                      help="load: also load it in the backend and generate one token")
    pull.add_argument("--replace", action="store_true",
                      help="replace a file of the same name installed from another repo")
    pull.set_defaults(run=run_pull)
    push = _command(commands, "push", "publish an installed model to an OCI registry", common)
    push.add_argument("model", metavar="MODEL", help="an installed model's id or file name")
    push.add_argument("target", metavar="TARGET", help="oci://host[:port]/repository:tag (credentials: "
                      "REGISTRY_AUTH_FILE or Docker's config.json)")
    push.set_defaults(run=run_push)
    ls = _command(commands, "ls", "list installed models", common)
    ls.add_argument("--json", action="store_true", help="print the records as JSON")
    ls.set_defaults(run=run_ls)
    rm = _command(commands, "rm", "delete an installed model", common)
    rm.add_argument("name", metavar="NAME", help="model id, file name, or repo id (every file from it)")
    rm.set_defaults(run=run_rm)
    lock = _command(commands, "lock", "resolve every model of a manifest and write its pins into it", None)
    lock.add_argument("file", metavar="FILE", help="a MODELS_MANIFEST file, YAML or JSON; rewritten in place")
    lock.set_defaults(run=run_lock, local=False, models_dir=None)
    return parser


def _command(commands, name: str, summary: str, common: argparse.ArgumentParser | None) -> argparse.ArgumentParser:
    """A subcommand whose --help ends with its own exit statuses and environment."""
    return commands.add_parser(name, parents=[common] if common else [], help=summary, description=summary,
                               epilog=epilog(name), formatter_class=argparse.RawDescriptionHelpFormatter)


def run_lock(args: argparse.Namespace) -> int:
    """Resolve at the sources (HF_ENDPOINT, HF_TOKEN); MODELS_DIR is not touched."""
    from pathlib import Path

    from proxy.declared.lock import LockError, describe, lock_manifest, lock_source
    from proxy.declared.manifest import ManifestError

    settings = _local_settings(args)
    try:
        pins = lock_manifest(Path(args.file), lock_source(settings))
    except ManifestError as err:
        raise CliError(str(err), ErrorCode.INVALID_REQUEST, EXIT_USAGE) from err
    except ValueError as err:  # REGISTRY_AUTH_FILE set and unreadable or malformed
        raise CliError(str(err), None, EXIT_USAGE) from err
    except OSError as err:
        raise CliError(f"{args.file}: {err.strerror or err}", None, EXIT_USAGE) from err
    except LockError as err:
        raise CliError(f"could not resolve, nothing written: {err}", None, EXIT_FAILED) from err
    for index, pin in enumerate(pins):
        print(f"models[{index}]: {describe(pin)}")
    return EXIT_OK


# --- pull -------------------------------------------------------------------------------------------

def run_pull(args: argparse.Namespace) -> int:
    body = {"model": args.model, "filename": args.filename, "revision": args.revision, "verify": args.verify,
            "replace": args.replace or None}
    try:
        request = parse_pull_request(body)
    except ProxyError as err:
        raise CliError(err.message + scheme_hint(args.model, err.code), err.code, EXIT_USAGE) from err
    progress = PullProgress(sys.stdout, sys.stdout.isatty())
    try:
        events = _pull_local(args, request) if args.local else _pull_remote(args, body)
        return follow(events, progress)
    finally:
        progress.end_bar()


def scheme_hint(model: str, code: str) -> str:
    """For a refused `name:tag` (Ollama's way of naming a model), the reference it probably meant."""
    if code != ErrorCode.INVALID_REPO_ID or not OLLAMA_NAME_RE.match(model):
        return ""
    return f"; did you mean ollama://{model} (Ollama's registry)? A Hub repo id is owner/name[:QUANT]"


def follow(events: Iterable[dict], progress: PullProgress) -> int:
    """Show every event; EXIT_OK on `complete`.

    Raises:
        CliError: the `error` line's message and code; the stream ending before a final line.
    """
    for event in events:
        progress.show(event)
        if event.get("status") == "complete":
            return EXIT_OK
        if event.get("status") == "error":
            progress.end_bar()
            raise CliError(str(event.get("error")), event.get("code"))
    raise CliError("the stream ended before the pull did; it may go on: see GET /v1/api/pulls",
                   ErrorCode.STREAM_ENDED, EXIT_UNREACHABLE)


def _pull_remote(args: argparse.Namespace, body: dict) -> Iterable[dict]:
    return _stream(args, "/v1/api/pull", {key: value for key, value in body.items() if value is not None})


def _stream(args: argparse.Namespace, path: str, body: dict, what: str = "pull") -> Iterable[dict]:
    """The NDJSON lines of a streamed pull or push.

    Raises:
        CliError: connection_lost.
    """
    response = _call(args, "POST", path, json={**body, "stream": True}, stream=True,
                     timeout=(CONNECT_TIMEOUT_S, None))
    with response:
        try:
            for line in response.iter_lines():
                if line.strip():
                    yield json.loads(line)
        except (requests.RequestException, ValueError) as err:
            goes_on = "the pull goes on: see GET /v1/api/pulls" if what == "pull" else "the push may go on"
            raise CliError(f"lost the connection to the proxy at {args.url} mid-{what} ({_reason(err)}); "
                           f"{goes_on}", ErrorCode.CONNECTION_LOST, EXIT_UNREACHABLE) from err


def _pull_local(args: argparse.Namespace, request: PullRequest) -> Iterable[dict]:
    """The same pull the proxy runs, in this process: resolve, check the cache, download, install."""
    from proxy.app import build_services  # the whole service stack only for --local

    services = build_services(_local_settings(args))
    try:
        ticket = services.pull_service.start(request)
    except ProxyError as err:
        raise CliError(err.message, err.code) from err
    try:
        yield from (event.to_json() for event in ticket.events())
    finally:
        if ticket.job is not None and not ticket.job.done:  # interrupted: let the transfer save its progress
            services.pulls.shutdown()
            ticket.job.wait(STOP_WAIT_S)


def _local_settings(args: argparse.Namespace):
    from proxy.settings import Settings

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env(args.env)
    except ValueError as err:
        raise CliError(str(err), ErrorCode.INVALID_REQUEST, EXIT_USAGE) from err
    settings = settings.replace(models_manifest=None)  # a local pull is one model, not the declared set
    return settings.replace(models_dir=args.models_dir) if args.models_dir else settings


# --- push -------------------------------------------------------------------------------------------

def run_push(args: argparse.Namespace) -> int:
    body = {"model": args.model, "target": args.target}
    progress = PullProgress(sys.stdout, sys.stdout.isatty())
    try:
        events = _push_local(args, body) if args.local else _stream(args, "/v1/api/push", body, "push")
        return follow(events, progress)
    finally:
        progress.end_bar()


def _push_local(args: argparse.Namespace, body: dict) -> Iterable[dict]:
    """The same push the proxy runs, in this process, from MODELS_DIR."""
    from proxy.app import build_services

    service = build_services(_local_settings(args)).push_service
    try:
        prepared = service.prepare(body)
    except ProxyError as err:
        raise CliError(err.message, err.code, EXIT_USAGE if err.status == 400 else EXIT_FAILED) from err
    yield from (event.to_json() for event in service.events(prepared))


# --- ls and rm ------------------------------------------------------------------------------------

def run_ls(args: argparse.Namespace) -> int:
    if args.local:
        models = _local_store(args).describe_installed()
    else:
        models = _call(args, "GET", "/v1/api/models").json().get("models", [])
    if args.json:
        print(json.dumps(models, indent=1))
    else:
        print_models(models)
    return EXIT_OK


def print_models(models: list[dict]) -> None:
    rows = [("ID", "SIZE", "REPO", "INTACT")]
    rows += [(str(m.get("id")), format_bytes(m.get("size") or 0), str(m.get("repo") or "-"),
              "yes" if m.get("intact") else "NO") for m in models]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


def run_rm(args: argparse.Namespace) -> int:
    if args.local:
        files = _delete_local(args)
    else:
        files = _call(args, "DELETE", "/v1/api/delete", json={"model": args.name}).json().get("files", [])
    print("deleted " + ", ".join(files))
    return EXIT_OK


def _delete_local(args: argparse.Namespace) -> list[str]:
    """Delete unless a pull or push (of any process on this MODELS_DIR) holds one of the files' locks.

    Raises:
        CliError: model_not_found, model_busy.
    """
    store = _local_store(args)
    files = store.files_of_model(args.name)
    if not files:
        raise CliError(f"no installed model named {args.name}", ErrorCode.MODEL_NOT_FOUND)
    if not store.delete_unless_busy(files):
        raise CliError(f"{args.name} is being pulled or pushed; delete it when that ends", ErrorCode.MODEL_BUSY)
    return files


def _local_store(args: argparse.Namespace):
    from proxy.models_dir.store import ModelStore

    return ModelStore(_local_settings(args).models_dir)


# --- HTTP -----------------------------------------------------------------------------------------

def _call(args: argparse.Namespace, method: str, path: str, **kwargs) -> requests.Response:
    """One request to the proxy.

    Raises:
        CliError: the proxy's JSON error (exit 1), or proxy_unreachable (exit 3).
    """
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    kwargs.setdefault("timeout", (CONNECT_TIMEOUT_S, REQUEST_TIMEOUT_S))
    try:
        response = requests.request(method, args.url.rstrip("/") + path, headers=headers, **kwargs)
    except requests.RequestException as err:
        raise CliError(f"cannot reach the proxy at {args.url} ({_reason(err)})", ErrorCode.PROXY_UNREACHABLE,
                       EXIT_UNREACHABLE) from err
    if response.status_code >= 400:
        with response:
            raise _http_error(response)
    return response


def _http_error(response: requests.Response) -> CliError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("error"):
        return CliError(str(body["error"]), body.get("code"))
    return CliError(f"the proxy answered HTTP {response.status_code} without a JSON error: "
                    f"{response.text[:200]!r}", f"http_{response.status_code}")


def _reason(err: BaseException) -> str:
    """The innermost OS error's text (e.g. 'Connection refused'), else the exception's type name."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror
        inner = getattr(seen, "reason", None)
        seen = inner if isinstance(inner, BaseException) else (seen.__cause__ or seen.__context__)
    return type(err).__name__
