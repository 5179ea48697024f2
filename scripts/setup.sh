#!/usr/bin/env bash
# Installs what magi-bench needs from the distribution (Debian 12 / Ubuntu) when it is missing,
# then configures and builds. Sourced by run.sh and test.sh; usable alone:
#   scripts/setup.sh [preset]        (preset: release (default; CUDA when nvcc is found) or cpu)
set -euo pipefail

MAGI_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MAGI_PRESET="${1:-${MAGI_PRESET:-release}}"

magi_packages=(cmake ninja-build g++ pkg-config libcli11-dev nlohmann-json3-dev libfmt-dev
               libspdlog-dev libopenmpi-dev openmpi-bin libgtest-dev python3)

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
  local jobs
  jobs="$(nproc)"
  cmake --preset "$MAGI_PRESET" -S "$MAGI_ROOT" >/dev/null
  cmake --build "$(magi_build_dir)" -j "$jobs"
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
