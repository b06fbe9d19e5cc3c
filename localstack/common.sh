# Settings and helpers shared by localstack/start, localstack/stop and localstack/selftest (sourced, not run).
# The caller sets HERE (this folder) and `set -euo pipefail` before sourcing.
# shellcheck disable=SC2034  # variables used by the scripts that source this file

REPO=$(cd "$HERE/.." && pwd)
STATE=${LOCALSTACK_STATE_DIR:-$REPO/target/localstack}
case "$STATE" in /*) ;; *) STATE=$PWD/$STATE ;; esac
PORT=${LOCALSTACK_PORT:-4566}
VENV=$STATE/venv
FS=$STATE/fs                       # LocalStack's FILESYSTEM_ROOT
LIB=$FS/var/lib/localstack/lib     # where LocalStack looks for Java and DynamoDB Local
PIDFILE=$STATE/localstack.pid
PORTFILE=$STATE/localstack.port
LOGFILE=$STATE/localstack.log
BASE_URL=http://127.0.0.1:$PORT

now() { echo "${EPOCHREALTIME/,/.}"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
say() { echo "localstack: $*"; }

# Prints the pid of the LocalStack this state dir started, if it is still alive; fails otherwise.
running_pid() {
  local pid
  [ -f "$PIDFILE" ] || return 1
  pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  # the pid must still be our LocalStack (pids get reused)
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$VENV/bin/python -m localstack.runtime.main" || return 1
  echo "$pid"
}

# Pids of DynamoDB Local JVMs started from this state dir (LocalStack's children, or orphans of a killed one).
dynamodb_pids() {
  pgrep -f -- "$LIB/dynamodb-local/" || true
}

# All descendants of a pid (children first-level down to leaves).
descendants() {
  local child
  for child in $(pgrep -P "$1" || true); do
    echo "$child"
    descendants "$child"
  done
}

# 0 when GET /_localstack/init/ready says the READY stage completed and no script failed.
init_ready() {
  local body
  body=$(curl -s --max-time 2 "$BASE_URL/_localstack/init/ready" 2>/dev/null) || return 1
  echo "$body" | grep -q '"completed": *true' || return 1
  if echo "$body" | grep -q '"state": *"ERROR"'; then return 2; fi
  return 0
}
