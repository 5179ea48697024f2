#!/usr/bin/env bash
# Installs what magi-bench needs from the distribution (Debian 12 / Ubuntu) when it is missing,
# then configures and builds. Sourced by run.sh and test.sh; usable alone:
#   scripts/setup.sh [preset]        (preset: release (default; CUDA when nvcc is found) or cpu)
# The build is quiet: its output (nvcc's ptxas warnings included) goes to <build dir>/magi-build.log
# and is shown only when the build fails.
set -euo pipefail

MAGI_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MAGI_PRESET="${1:-${MAGI_PRESET:-release}}"

magi_packages=(cmake ninja-build g++ pkg-config libcli11-dev nlohmann-json3-dev libfmt-dev
               libspdlog-dev libopenmpi-dev openmpi-bin libgtest-dev python3
               python3-matplotlib)

magi_install_missing() {
  local missing=()
  for p in "${magi_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}"
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

magi_build_dir() {
  case "$MAGI_PRESET" in
    release) echo "$MAGI_ROOT/build" ;;
    cpu) echo "$MAGI_ROOT/build-cpu" ;;
    *) echo "setup: unknown preset '$MAGI_PRESET' (expected release or cpu)" >&2; exit 2 ;;
  esac
}

magi_build() {
  local dir log
  dir="$(magi_build_dir)"
  log="$dir/magi-build.log"
  mkdir -p "$dir"
  if [ ! -f "$dir/build.ninja" ]; then
    case "$MAGI_PRESET" in
      cpu) echo "setup: first build (preset cpu): about 5 minutes on 2 cores; output in $log" ;;
      *) echo "setup: first build (preset $MAGI_PRESET): about 5 minutes on 2 cores, 15 where nvcc is found (CUDA kernels); output in $log" ;;
    esac
  fi
  if ! { cmake --preset "$MAGI_PRESET" -S "$MAGI_ROOT" && cmake --build "$dir" -j "$(nproc)"; } >"$log" 2>&1; then
    # The failing step's output (ninja marks it FAILED), else the end of the log.
    if grep -q '^FAILED:' "$log"; then sed -n '/^FAILED:/,$p' "$log"; else tail -n 40 "$log"; fi
    echo "setup: the build failed (preset $MAGI_PRESET; whole output in $log)" >&2
    exit 1
  fi
}

# mpirun flags that make it work here: as root it needs to be told it may run; with more ranks
# than cores it must be allowed to oversubscribe.
magi_mpirun() {
  local flags=(--oversubscribe --bind-to none)
  [ "$(id -u)" -ne 0 ] || flags+=(--allow-run-as-root)
  mpirun "${flags[@]}" "$@"
}

magi_install_missing
magi_build
