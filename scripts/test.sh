#!/usr/bin/env bash
# Set up .venv (runtime + test requirements) and run every test, the OpenAPI fuzz run of the live stack
# included (tests/test_api_fuzz.py), so pytest's summary is the last line and counts everything that ran.
# Extra arguments go to pytest, e.g. scripts/test.sh -k pull -x
source "$(dirname "${BASH_SOURCE[0]}")/_setup.sh" requirements-dev.txt
# The registry tests (tests/registry.py) run a real OCI distribution registry and make htpasswd files.
if ! command -v docker-registry >/dev/null || ! command -v htpasswd >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq docker-registry apache2-utils >/dev/null 2>&1 \
      || { apt-get update -qq && apt-get install -y -qq docker-registry apache2-utils >/dev/null; }
  else
    echo "docker-registry or htpasswd missing (apt-get install docker-registry apache2-utils): the registry tests will fail" >&2
  fi
fi
# llama.cpp's own tools, from the one build _setup.sh made: llama-completion for tests/test_llama_hf.py.
export LLAMA_COMPLETION="$LLAMA_BUILD_DIR/llama-completion" LLAMA_SERVER="$LLAMA_BUILD_DIR/llama-server"
# The tests' clients share the cores with every backend they start: a host shared with busy processes, where one
# llama.cpp thread decodes faster than the default of one a core (docs/operations.md, Threads).
export N_THREADS="${N_THREADS:-1}"
# Every tool a test needs is installed above, so a test that finds one missing fails instead of skipping.
export TESTS_REQUIRE_TOOLS=1
# pytest exits 5 when nothing was collected: non-zero, so that is a failure here too.
exec python -m pytest -ra "$@" tests
