"""`python -m proxy pull|ls|rm` against a real gunicorn proxy on the fake Hub, and with --local."""
from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from proxy.cli.commands import EXIT_UNREACHABLE, CliError, follow, main
from proxy.cli.progress import PullProgress
from proxy.models_dir.store import ModelStore
from scripts import stack
from scripts.gguf_files import random_gguf
from tests.cli_runs import API_KEY, cli_env, run_on_terminal
from tests.fakes.hub import Fault, FakeHub
from tests.helpers import REPO_ROOT, free_port

KB = 1000
FILES = {  # repo -> (file, size): one repo a test, so each pull really downloads
    "acme/bar-GGUF": ("bar.Q4_K_M.gguf", 1500 * KB),
    "acme/plain-GGUF": ("plain.Q4_K_M.gguf", 1500 * KB),
    "acme/bad-GGUF": ("bad.Q4_K_M.gguf", 100 * KB),
    "acme/ls-GGUF": ("ls.Q8_0.gguf", 100 * KB),
    "acme/local-GGUF": ("local.Q4_K_M.gguf", 200 * KB),
}


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sources")
    with FakeHub(throttle_bps=1000 * KB) as fake:  # about 1.5 s for the files that show a bar
        for seed, (repo, (name, size)) in enumerate(FILES.items(), start=1):
            fake.add_repo(repo, files={name: random_gguf(folder / name, size, seed)})
        fake.faults.add(Fault.wrong_bytes(times=None), file=FILES["acme/bad-GGUF"][0])
        yield fake


@pytest.fixture(scope="module")
def proxy(hub, tmp_path_factory):
    """A real gunicorn proxy; yields (url, MODELS_DIR)."""
    models_dir = tmp_path_factory.mktemp("served") / "models"
    no_backend = f"http://127.0.0.1:{free_port()}"
    env = {"PROXY_API_KEY": API_KEY, "PULL_CONNECTIONS": "1"}
    with stack.proxy(models_dir, models_dir.parent, hub.url, no_backend, env) as (url, _):
        yield url, models_dir


def uninstall(models_dir: Path, filename: str) -> None:
    """The file gone before a pull test, so each run of it (a repeat, a rerun) really downloads: the module's proxy
    and MODELS_DIR outlive one test."""
    (models_dir / filename).unlink(missing_ok=True)


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m proxy ARGS` as a process, its output captured (a pipe, not a terminal)."""
    return subprocess.run([sys.executable, "-m", "proxy", *args], cwd=REPO_ROOT, env=env or cli_env(),
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def cli(capsys):
    """cli(*args, env=...) -> (exit status, stdout, stderr) of the CLI's main() run in this process."""

    def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            status = main(list(args), env or cli_env())
        except SystemExit as exit_:  # argparse's usage errors
            status = exit_.code
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return run


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_pull_on_a_terminal_shows_a_bar_with_bytes_rate_and_eta(proxy, hub):
    url, models_dir = proxy
    uninstall(models_dir, "bar.Q4_K_M.gguf")
    status, output = run_on_terminal("pull", "acme/bar-GGUF", "--url", url, env=cli_env())
    assert status == 0, output
    bars = re.findall(r"\rbar\.Q4_K_M\.gguf \[[#.]+\]\s+[\d.]+% ([\d.]+ [kM]B) / (1\.5 MB)  ([\d.]+ [kM]B)/s  "
                      r"ETA (\d+:\d\d)", output)
    assert len(bars) >= 2, output
    assert "100.0% 1.5 MB / 1.5 MB" in output
    assert "pulling acme/bar-GGUF: bar.Q4_K_M.gguf" in output and "verifying bar.Q4_K_M.gguf" in output
    assert f"installed {models_dir.resolve() / 'bar.Q4_K_M.gguf'}" in output
    assert sha256_of(models_dir / "bar.Q4_K_M.gguf") == hub.blob("acme/bar-GGUF", "bar.Q4_K_M.gguf").sha256


def test_pull_into_a_pipe_prints_plain_lines(proxy, cli):
    url, models_dir = proxy
    uninstall(models_dir, "plain.Q4_K_M.gguf")
    result = run_cli("pull", "acme/plain-GGUF:q4_k_m", "plain.Q4_K_M.gguf", "--url", url, "--verify", "checksum")
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stdout
    lines = result.stdout.splitlines()
    progress = [line for line in lines if line.startswith("downloading plain.Q4_K_M.gguf: ")]
    assert 2 <= len(progress) <= 12 and progress[-1].startswith("downloading plain.Q4_K_M.gguf: 100%, 1.5 MB / 1.5 MB")
    assert lines[0] == "pulling acme/plain-GGUF: plain.Q4_K_M.gguf" and lines[-1].startswith("installed ")
    status, out, _ = cli("pull", "acme/plain-GGUF", "--url", url)
    assert status == 0 and out == f"already installed: {models_dir.resolve() / 'plain.Q4_K_M.gguf'}\n"


@pytest.mark.parametrize("args, code", [
    (["acme/missing-GGUF"], "repo_not_found"),
    (["acme/ls-GGUF", "nope.Q4_K_M.gguf"], "file_not_found"),
    (["acme/bad-GGUF"], "checksum_mismatch"),  # an error line in the stream
])
def test_failed_pull_exits_1_with_the_error_code(proxy, cli, args, code):
    status, _, err = cli("pull", *args, "--url", proxy[0])
    assert status == 1 and err.startswith("error: ") and err.rstrip().endswith(f"[{code}]"), err


def test_pull_needs_the_api_key(proxy, cli):
    status, _, err = cli("pull", "acme/ls-GGUF", "--url", proxy[0], env=cli_env(PROXY_API_KEY=""))
    assert status == 1 and "[auth_required]" in err
    status, _, err = cli("pull", "acme/ls-GGUF", "--url", proxy[0], "--api-key", "wrong")
    assert status == 1 and "[auth_required]" in err


def test_unreachable_proxy_exits_3():
    url = f"http://127.0.0.1:{free_port()}"
    result = run_cli("pull", "acme/bar-GGUF", env=cli_env(PROXY_URL=url))
    assert result.returncode == 3
    assert f"cannot reach the proxy at {url} (Connection refused) [proxy_unreachable]" in result.stderr


@pytest.mark.parametrize("args", [["pull"], ["pull", "no-owner"], ["pull", "acme/x", "../x.gguf"], ["bogus"],
                                  ["pull", "acme/x", "--verify", "twice"]])
def test_usage_errors_exit_2(cli, args):
    status, _, err = cli(*args)
    assert status == 2 and err


def test_ls_and_rm_through_the_proxy(proxy, cli):
    url, models_dir = proxy
    assert cli("pull", "acme/ls-GGUF", "--url", url)[0] == 0
    status, out, _ = cli("ls", "--url", url)
    assert status == 0 and out.splitlines()[0].split() == ["ID", "SIZE", "REPO", "INTACT"]
    assert re.search(r"^ls\.Q8_0\s+100\.0 kB\s+acme/ls-GGUF\s+yes$", out, re.MULTILINE), out
    assert cli("rm", "ls.Q8_0", "--url", url)[:2] == (0, "deleted ls.Q8_0.gguf\n")
    assert not (models_dir / "ls.Q8_0.gguf").exists()
    assert "ls.Q8_0" not in cli("ls", "--url", url)[1]
    status, _, err = cli("rm", "ls.Q8_0", "--url", url)
    assert status == 1 and "[model_not_found]" in err


def test_local_pull_installs_a_verified_file_without_a_proxy(hub, tmp_path):
    models_dir = tmp_path / "models"
    env = cli_env(MODELS_DIR=str(models_dir), HF_ENDPOINT=hub.url, BACKEND_URL=f"http://127.0.0.1:{free_port()}")
    result = run_cli("pull", "--local", "acme/local-GGUF", env=env)
    assert result.returncode == 0, result.stderr
    blob = hub.blob("acme/local-GGUF", "local.Q4_K_M.gguf")
    assert sha256_of(models_dir / "local.Q4_K_M.gguf") == blob.sha256
    [record] = json.loads((models_dir / ".proxy" / "models.json").read_text())["models"]
    assert record["repo"] == "acme/local-GGUF" and record["sha256"] == blob.sha256
    assert record["commit"] == hub.commit_sha("acme/local-GGUF")
    assert list((models_dir / ".staging").iterdir()) == []
    assert result.stdout.splitlines()[-1].startswith(f"installed {models_dir / 'local.Q4_K_M.gguf'}")


def test_ls_rm_and_errors_local(hub, tmp_path, cli):
    models_dir = tmp_path / "models"
    env = cli_env(HF_ENDPOINT=hub.url, MODELS_DIR=str(models_dir))
    where = ("--local", "--models-dir", str(models_dir))
    assert cli("pull", *where, "acme/local-GGUF", env=cli_env(HF_ENDPOINT=hub.url))[0] == 0
    status, out, _ = cli("pull", "--local", "acme/local-GGUF:Q4_K_M", env=env)
    assert status == 0 and out.startswith("already installed: ")
    status, _, err = cli("pull", "--local", "acme/missing-GGUF", env=env)
    assert status == 1 and "[repo_not_found]" in err
    [model] = json.loads(cli("ls", *where, "--json")[1])
    assert (model["id"], model["repo"], model["intact"]) == ("local.Q4_K_M", "acme/local-GGUF", True)
    assert cli("rm", "--local", "acme/local-GGUF", env=env)[:2] == (0, "deleted local.Q4_K_M.gguf\n")
    assert not (models_dir / "local.Q4_K_M.gguf").exists()
    assert json.loads(cli("ls", *where, "--json")[1]) == []
    status, _, err = cli("rm", *where, "local")
    assert status == 1 and "[model_not_found]" in err


def test_local_rm_refuses_a_file_another_process_is_pulling(hub, tmp_path, cli):
    where = ("--local", "--models-dir", str(tmp_path / "models"))
    assert cli("pull", *where, "acme/local-GGUF", env=cli_env(HF_ENDPOINT=hub.url))[0] == 0
    with ModelStore(tmp_path / "models").lock("local.Q4_K_M.gguf"):  # what a running pull holds
        status, _, err = cli("rm", *where, "local.Q4_K_M")
    assert status == 1 and "[model_busy]" in err and (tmp_path / "models" / "local.Q4_K_M.gguf").exists()


def test_plain_progress_prints_every_tenth_or_every_ten_seconds():
    out, now = io.StringIO(), [0.0]
    progress = PullProgress(out, tty=False, clock=lambda: now[0])
    for completed in (0, 10, 50, 120, 150, 990, 1000):  # bytes of 1000, one event a second
        progress.show({"status": "downloading", "filename": "f.gguf", "completed": completed, "total": 1000})
        now[0] += 1.0
    progress.show({"status": "downloading", "filename": "f.gguf", "completed": 1000, "total": 1000})
    percents = [line.split(": ")[1].split(",")[0] for line in out.getvalue().splitlines()]
    assert percents == ["0%", "12%", "99%", "100%"]
    now[0] += 10.0
    progress.show({"status": "downloading", "filename": "f.gguf", "completed": 1000, "total": 1000})
    assert len(out.getvalue().splitlines()) == 5


def test_a_stream_that_ends_without_a_final_line_exits_3():
    with pytest.raises(CliError) as caught:
        follow(iter([{"status": "starting", "model": "a/b", "filename": "f.gguf"}]), PullProgress(io.StringIO(), False))
    assert caught.value.exit_status == EXIT_UNREACHABLE and caught.value.code == "stream_ended"
