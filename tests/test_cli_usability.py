"""The `gguf-proxy` command as a newcomer meets it: on the PATH from any directory, each command's own exit
statuses in its --help, a bare Ollama name answered with the scheme it needs, a bar that fits the terminal."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from proxy.cli.progress import bar_line, format_stats
from scripts.gguf_files import random_gguf
from tests.cli_runs import cli_env, run_on_terminal
from tests.fakes.hub import FakeHub

KB = 1000
REPO, LONG_NAME = "acme/wide-GGUF", "a-rather-long-model-name-for-a-terminal-Instruct.Q4_K_M.gguf"
GGUF_PROXY = Path(sys.executable).parent / "gguf-proxy"  # the console script pyproject.toml declares


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sources")
    with FakeHub(throttle_bps=1000 * KB) as fake:  # about 1.5 s: several bars are drawn
        fake.add_repo(REPO, files={LONG_NAME: random_gguf(folder / LONG_NAME, 1500 * KB, 7)})
        fake.add_repo("acme/small-GGUF", files={"small.Q8_0.gguf": random_gguf(folder / "small.gguf", 50 * KB, 8)})
        yield fake


def gguf_proxy(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """The installed command, run from /tmp: no checkout on the path, no `python -m`."""
    return subprocess.run([str(GGUF_PROXY), *args], cwd="/tmp", env=env, capture_output=True, text=True,
                          timeout=60)


def test_the_console_script_works_from_another_directory(hub, tmp_path):
    env = cli_env(MODELS_DIR=str(tmp_path / "models"), HF_ENDPOINT=hub.url, PYTHONPATH="")
    help_ = gguf_proxy("--help", env=env)
    assert help_.returncode == 0 and help_.stdout.startswith("usage: gguf-proxy "), help_.stderr
    assert all(command in help_.stdout for command in ("pull", "ls", "rm", "push", "lock"))

    pulled = gguf_proxy("pull", "--local", "acme/small-GGUF", env=env)
    assert pulled.returncode == 0, pulled.stderr
    listed = gguf_proxy("ls", "--local", env=env)
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"^small\.Q8_0\s+50\.0 kB\s+acme/small-GGUF\s+yes$", listed.stdout, re.MULTILINE), listed.stdout


@pytest.mark.parametrize("command, has, lacks", [
    ("pull", ["  3    cannot reach the proxy", "GET /v1/api/pulls", "a --local pull stops"], ["pins written"]),
    ("lock", ["  1    an entry could not be resolved; nothing was written", "not a valid manifest"],
     ["  3 ", "GET /v1/api/pulls", "PROXY_URL"]),
    ("ls", ["  0    listed", "  3    cannot reach the proxy"], ["pull failed", "GET /v1/api/pulls"]),
    ("rm", ["  0    deleted", "being pulled or pushed"], ["pull failed", "a --local pull stops"]),
    ("push", ["  0    pushed", "the push failed"], ["pull failed", "GET /v1/api/pulls"]),
])
def test_each_command_help_lists_its_own_exit_statuses(command, has, lacks):
    result = subprocess.run([sys.executable, "-m", "proxy", command, "--help"], capture_output=True, text=True,
                            timeout=30, env=cli_env())
    assert result.returncode == 0
    statuses = result.stdout.split("exit status:", 1)[1]
    assert [text for text in has if text not in statuses] == []
    assert [text for text in lacks if text in statuses] == []


@pytest.mark.parametrize("model", ["gemma3:270m", "qwen2.5:0.5b-instruct", "llama3"])
def test_a_bare_ollama_name_is_answered_with_the_scheme_it_needs(model):
    result = subprocess.run([sys.executable, "-m", "proxy", "pull", model], capture_output=True, text=True,
                            timeout=30, env=cli_env())
    assert result.returncode == 2
    assert f"did you mean ollama://{model} " in result.stderr and "[invalid_repo_id]" in result.stderr, result.stderr


def test_a_bad_repo_id_that_is_no_ollama_name_gets_no_suggestion():
    result = subprocess.run([sys.executable, "-m", "proxy", "pull", "Not A Repo"], capture_output=True, text=True,
                            timeout=30, env=cli_env())
    assert result.returncode == 2 and "[invalid_repo_id]" in result.stderr and "ollama://" not in result.stderr


@pytest.mark.parametrize("columns", [40, 60, 72, 80, 100, 132, 220])
def test_the_bar_fits_the_terminal_and_keeps_the_numbers_whole(columns):
    stats = format_stats(123_400_000, 2_419_500_000, 12_300_000)
    line = bar_line(LONG_NAME, 5.1, stats, columns)
    assert len(line) <= columns - 1, line
    if columns >= 60:  # room for every number
        assert line.endswith("  5.1% 123.4 MB / 2.4 GB  12.3 MB/s  ETA 3:07"), line
    if columns >= 132:  # room for the whole name and a bar
        assert line.startswith(LONG_NAME + " [") and "#" in line, line


@pytest.mark.parametrize("columns", [80, 160])
def test_a_pull_on_a_terminal_draws_bars_as_wide_as_the_terminal(hub, tmp_path, columns):
    env = {k: v for k, v in cli_env(MODELS_DIR=str(tmp_path / "models"), HF_ENDPOINT=hub.url).items()
           if k not in ("COLUMNS", "LINES")}
    status, output = run_on_terminal("pull", "--local", REPO, env=env, columns=columns)
    assert status == 0, output
    bars = [part.rstrip() for part in output.split("\r") if "% " in part and "ETA " in part]
    assert len(bars) >= 2, output
    assert max(len(line) for line in bars) <= columns - 1, bars
    assert all(re.search(r"ETA (\d+:\d\d|--:--)$", line.split("\n")[0]) for line in bars), bars
    if columns == 160:
        assert all(line.startswith(LONG_NAME + " [") for line in bars), bars
