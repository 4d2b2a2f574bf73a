#!/usr/bin/env bash
# Set up .venv (runtime + test requirements) and run every test.
# Extra arguments go to pytest, e.g. scripts/test.sh -k pull -x
source "$(dirname "${BASH_SOURCE[0]}")/_setup.sh" requirements-dev.txt
status=0
python -m pytest -ra "$@" tests || status=$?
# pytest exits 5 when nothing was collected: that is a failure here, not a pass.
exit "$status"
