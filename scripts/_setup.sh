# Sourced by start.sh and test.sh: create .venv if missing and install the given requirements file.
# llama-cpp-python builds from source the first time (about 8 minutes on 2 cores); pip caches the wheel.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r "${1:-requirements.txt}"
export PATH="$ROOT/.venv/bin:$PATH"
