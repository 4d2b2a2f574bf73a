# Sourced by start.sh and test.sh: create .venv if missing and install the given requirements file.
#
# llama.cpp is compiled once per machine and build configuration by scripts/build_llama.sh (the shared
# libraries and llama.cpp's own tools, about 9 minutes on 2 cores, cached by a fingerprint of version, flags
# and this CPU). llama-cpp-python itself is installed without its own build (-DLLAMA_BUILD=OFF: its Python
# code only, seconds) and given those libraries in its lib folder, where it loads them from.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
LLAMA_BUILD_DIR="$(scripts/build_llama.sh)"
export LLAMA_BUILD_DIR
llama_req="$(grep -E '^llama-cpp-python==' requirements.txt)"
if ! .venv/bin/python -m pip show --quiet llama-cpp-python 2>/dev/null \
    || [ "$(.venv/bin/python -m pip show llama-cpp-python | sed -n 's/^Version: //p')" != "${llama_req#*==}" ]; then
  CMAKE_ARGS="-DLLAMA_BUILD=OFF -DLLAVA_BUILD=OFF" .venv/bin/python -m pip install --quiet --no-cache-dir \
    --no-deps --force-reinstall --no-binary llama-cpp-python "$llama_req"
  rm -f .venv/.llama-build
fi
if [ "$(cat .venv/.llama-build 2>/dev/null)" != "$LLAMA_BUILD_DIR" ]; then
  lib_dir="$(.venv/bin/python -c 'import importlib.util, os; print(os.path.join(os.path.dirname(importlib.util.find_spec("llama_cpp").origin), "lib"))')"
  mkdir -p "$lib_dir"
  cp -a "$LLAMA_BUILD_DIR"/*.so* "$lib_dir/"
  echo "$LLAMA_BUILD_DIR" > .venv/.llama-build
fi
.venv/bin/python -m pip install --quiet -r "${1:-requirements.txt}"
export PATH="$ROOT/.venv/bin:$PATH"
.venv/bin/python -m pip show --quiet gguf-proxy 2>/dev/null || .venv/bin/python -m pip install --quiet --no-deps -e .  # the gguf-proxy command (pyproject.toml)
