#!/bin/sh
# run_mpi.sh NP COMMAND... : runs COMMAND under mpirun with NP ranks (oversubscribed), or skips
# (exit 77, ctest's SKIP_RETURN_CODE) with a message when mpirun is absent.
# MPIRUN overrides the launcher. Open MPI needs --allow-run-as-root when run as root.
np="$1"; shift
launcher="${MPIRUN:-mpirun}"
if ! command -v "$launcher" >/dev/null 2>&1; then
  echo "SKIPPED: $launcher not found; the mpi tests need an MPI launcher"
  exit 77
fi
extra=""
if "$launcher" --version 2>/dev/null | grep -q "Open MPI"; then
  extra="--oversubscribe"
  [ "$(id -u)" = "0" ] && extra="$extra --allow-run-as-root"
  # A session directory of its own: jobs started side by side (ctest -j) under one shared
  # /tmp/ompi.* race to create and remove it ("orte_session_dir failed").
  session=$(mktemp -d) || exit 1
  OMPI_MCA_orte_tmpdir_base="$session" "$launcher" $extra -np "$np" "$@"
  rc=$?
  rm -rf "$session"
  exit $rc
fi
exec "$launcher" $extra -np "$np" "$@"
