#!/usr/bin/env bash
# Build llama.cpp once per machine, from the sources the pinned llama-cpp-python vendors: the shared
# libraries llama-cpp-python loads (libllama, libggml*) and llama.cpp's own tools the tests and benchmarks
# run (llama-completion for tests/test_llama_hf.py, llama-server as the serving peer of
# scripts/bench_concurrency.py), in one CMake build. Prints the folder that holds them all.
#
# scripts/_setup.sh installs llama-cpp-python without its own build (-DLLAMA_BUILD=OFF) and puts these
# libraries in the package's lib folder, so llama.cpp is compiled once instead of twice (8 + 7 minutes).
#
# Native build (AVX2, AVX-512... whatever this host really has), minus AMX: many cloud VMs advertise
# amx_tile in their CPU flags without granting the tile state, and ggml's AMX matmul then dies with SIGILL
# on the first generation (docs/operations.md, "Troubleshooting"). The output folder is named by a fingerprint of
# (version, CMake flags, this CPU's flags), so a cache carried to another CPU is never reused there.
#
# Progress goes to stderr, a line a step and one for every tenth of the compile (ninja's [n/m]); stdout is only
# the folder.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/_pip.sh
LLAMA_CMAKE_ARGS="${LLAMA_CMAKE_ARGS:--DGGML_NATIVE=ON}"
LLAMA_CFLAGS="${LLAMA_CFLAGS:--mno-amx-tile -mno-amx-int8 -mno-amx-bf16}"
FIXED_ARGS="-DBUILD_SHARED_LIBS=ON -DCMAKE_BUILD_TYPE=Release -DLLAMA_BUILD_COMMON=ON -DLLAMA_BUILD_TOOLS=ON
  -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF
  -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_CURL=OFF
  -DCMAKE_INSTALL_RPATH=\$ORIGIN -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON"
TARGETS="llama llama-completion llama-server"
llama_req="$(grep -E '^llama-cpp-python==' requirements.txt)"
cpu_flags="$(grep -m1 -E '^flags' /proc/cpuinfo 2>/dev/null || true)"
key="$(printf '%s\n%s\n%s\n%s\n' "$llama_req" "$LLAMA_CMAKE_ARGS $LLAMA_CFLAGS $FIXED_ARGS" "$TARGETS" "$cpu_flags" \
  | sha256sum | cut -c1-16)"
out="${GGUF_PROXY_LLAMA:-${XDG_CACHE_HOME:-$HOME/.cache}/gguf-proxy/llama}/$key"
mkdir -p "$(dirname "$out")"
exec 9>"$out.lock"
flock 9  # one build at a time: a second caller waits for the first and then finds its result

progress() {  # ninja's "[n/m] ..." lines on stdin: one line on stderr for every tenth done, with the time so far
  local line last=0 tenth started=$SECONDS
  while IFS= read -r line; do
    if [[ $line =~ ^\[([0-9]+)/([0-9]+)\] ]]; then
      tenth=$(( BASH_REMATCH[1] * 10 / BASH_REMATCH[2] ))
      if (( tenth > last )); then
        last=$tenth
        echo "  compiled $(( tenth * 10 ))% (${BASH_REMATCH[1]}/${BASH_REMATCH[2]}) in $(( SECONDS - started ))s" >&2
      fi
    fi
  done
}
if [ ! -x "$out/llama-server" ] || [ ! -f "$out/libllama.so" ]; then
  echo "building llama.cpp from $llama_req (build $key: libllama, llama-completion, llama-server; about 9 minutes on 2 cores)" >&2
  PY="python3"; [ -x .venv/bin/python ] && PY=.venv/bin/python
  if ! command -v cmake >/dev/null || ! command -v ninja >/dev/null; then
    echo "  installing cmake and ninja" >&2
    pip_quiet "$PY" install cmake ninja
    export PATH="$(dirname "$("$PY" -c 'import sys; print(sys.executable)')"):$PATH"
  fi
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  echo "  downloading the llama.cpp sources ($llama_req)" >&2
  pip_quiet "$PY" download --no-deps --no-binary :all: -d "$work" "$llama_req"
  tar xzf "$work"/llama_cpp_python-*.tar.gz -C "$work"
  src="$(echo "$work"/llama_cpp_python-*/vendor/llama.cpp)"
  echo "  configuring (CMake)" >&2
  # shellcheck disable=SC2086  # one word per argument
  CFLAGS="$LLAMA_CFLAGS" CXXFLAGS="$LLAMA_CFLAGS" cmake -S "$src" -B "$work/build" -G Ninja \
    $LLAMA_CMAKE_ARGS $FIXED_ARGS >"$work/configure.log" 2>&1 || { tail -20 "$work/configure.log" >&2; exit 1; }
  echo "  compiling on $(nproc) cores" >&2
  # shellcheck disable=SC2086
  cmake --build "$work/build" --target $TARGETS -j "$(nproc)" 2>&1 | tee "$work/build.log" | progress \
    || { tail -20 "$work/build.log" >&2; exit 1; }
  mkdir -p "$out.tmp"
  cp -a "$work"/build/bin/*.so* "$out.tmp/" 2>/dev/null || true
  find "$work/build" -name '*.so*' \( -type f -o -type l \) -exec cp -a {} "$out.tmp/" \;
  cp "$work/build/bin/llama-completion" "$work/build/bin/llama-server" "$out.tmp/"
  rm -rf "$out" && mv "$out.tmp" "$out"
fi
echo "$out"
