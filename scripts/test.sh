#!/usr/bin/env bash
# Set up .venv (runtime + test requirements) and run every test, the OpenAPI fuzz run of the live stack
# included (tests/test_api_fuzz.py), so pytest's summary is the last line and counts everything that ran.
# Extra arguments go to pytest, e.g. scripts/test.sh -k pull -x
source "$(dirname "${BASH_SOURCE[0]}")/_setup.sh" requirements-dev.txt
# pytest exits 5 when nothing was collected: non-zero, so that is a failure here too.
exec python -m pytest -ra "$@" tests
