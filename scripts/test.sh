#!/usr/bin/env bash
# Set up .venv (runtime + test requirements) and run every test.
# Extra arguments go to pytest, e.g. scripts/test.sh -k pull -x
source "$(dirname "${BASH_SOURCE[0]}")/_setup.sh" requirements-dev.txt
status=0
python -m pytest -ra "$@" tests || status=$?
# The OpenAPI fuzz run against the live stack (fake Hub, real backend, proxy under gunicorn).
if [ "$#" -eq 0 ]; then
  python scripts/fuzz_api.py || status=1
fi
# pytest exits 5 when nothing was collected: that is a failure here, not a pass.
exit "$status"
