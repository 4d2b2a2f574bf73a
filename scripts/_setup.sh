# Sourced by start.sh and test.sh: create .venv if missing and install the given requirements file.
#
# llama-cpp-python builds from source (about 8 minutes on 2 cores). We build it ourselves, once per build
# configuration, into a wheel folder named by a fingerprint of (version, CMake flags, this CPU's flags):
# pip's own wheel cache is keyed by version alone, so it would hand back a wheel built with other flags
# (a native build that executes AMX tile instructions this VM does not grant, say) without a word.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip

# Native build (AVX2, AVX-512... whatever this host really has), minus AMX: many cloud VMs advertise
# amx_tile in their CPU flags without granting the tile state, and ggml's AMX matmul then dies with SIGILL
# on the first generation. AMX only speeds up batched int8/bf16 prompt work; see README "Troubleshooting".
# CMake takes CFLAGS/CXXFLAGS from the environment as the start of every compile line; -mno-* is explicit,
# so -march=native cannot turn AMX back on.
LLAMA_CMAKE_ARGS="${LLAMA_CMAKE_ARGS:--DGGML_NATIVE=ON}"
LLAMA_CFLAGS="${LLAMA_CFLAGS:--mno-amx-tile -mno-amx-int8 -mno-amx-bf16}"
llama_req="$(grep -E '^llama-cpp-python==' requirements.txt)"
cpu_flags="$(grep -m1 -E '^flags' /proc/cpuinfo 2>/dev/null || true)"
build_key="$(printf '%s\n%s\n%s\n' "$llama_req" "$LLAMA_CMAKE_ARGS $LLAMA_CFLAGS" "$cpu_flags" | sha256sum | cut -c1-16)"
wheel_dir="${GGUF_PROXY_WHEELS:-${XDG_CACHE_HOME:-$HOME/.cache}/gguf-proxy/wheels}/$build_key"
if ! ls "$wheel_dir"/llama_cpp_python-*.whl >/dev/null 2>&1; then
  echo "building $llama_req for this CPU (build $build_key, about 8 minutes on 2 cores)" >&2
  mkdir -p "$wheel_dir.tmp"
  CMAKE_ARGS="$LLAMA_CMAKE_ARGS" CFLAGS="$LLAMA_CFLAGS" CXXFLAGS="$LLAMA_CFLAGS" .venv/bin/python -m pip wheel --quiet --no-deps --no-cache-dir \
    --no-binary llama-cpp-python -w "$wheel_dir.tmp" "$llama_req"
  rm -rf "$wheel_dir" && mv "$wheel_dir.tmp" "$wheel_dir"
fi
if [ "$(cat .venv/.llama-build 2>/dev/null)" != "$build_key" ]; then
  .venv/bin/python -m pip install --quiet --force-reinstall --no-deps "$wheel_dir"/llama_cpp_python-*.whl
  echo "$build_key" > .venv/.llama-build
fi
.venv/bin/python -m pip install --quiet --find-links "$wheel_dir" -r "${1:-requirements.txt}"
export PATH="$ROOT/.venv/bin:$PATH"
