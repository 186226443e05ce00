#!/usr/bin/env bash
# `make e2e`: brings the one-node cluster up (up.sh), runs the test/realcluster suite against
# it, and tears it down whatever happens (down.sh, from a trap), restoring the host. Prints the
# time of each phase and the memory of the cluster before teardown.
#
# Environment: E2E_GO_TEST_TAGS (default realcluster), E2E_GO_TEST_RUN (a -run pattern),
# E2E_GO_TEST_TIMEOUT (default 30m), HELM (the Helm CLI), and those of lib.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
e2e_require_root
[ -x "${HELM:-}" ] || e2e_die "HELM=${HELM:-} is not an executable Helm CLI; run: make helm"

# One node per machine. Both checks come before the teardown trap: a run that cannot start
# must not tear down the node of another run (or of make e2e-up) that holds the ports.
exec 9>/run/lock/api-access-injector-e2e.lock
flock -n 9 || e2e_die "another make e2e is running on this machine (it holds /run/lock/api-access-injector-e2e.lock)"
e2e_require_no_node

t0=$(date +%s)
teardown() {
  local rc=$?
  local t=$(date +%s)
  "$here/down.sh"
  e2e_log "teardown $(($(date +%s) - t))s; total $(($(date +%s) - t0))s; exit $rc"
  exit $rc
}
trap teardown EXIT
trap 'exit 130' INT TERM

KUBECONFIG=$("$here/up.sh" 9>&-) # the daemons must not inherit the lock
export KUBECONFIG HELM E2E_NODE_DIR
t_up=$(date +%s)
e2e_log "node up in $((t_up - t0))s"

# memory prints the resident memory of the node's daemons and of its pods' shims (MiB).
memory() {
  local total=0 name pid rss
  for f in "$E2E_NODE_DIR"/run/*.pid; do
    name=$(basename "$f" .pid)
    pid=$(cat "$f")
    rss=$(ps -o rss= -p "$pid" 2>/dev/null | tr -d ' ') || continue
    [ -n "$rss" ] || continue
    printf '  %-24s %5d MiB\n' "$name" $((rss / 1024))
    total=$((total + rss))
  done
  local shims=0 n=0
  for pid in $(pgrep -f "containerd-shim-runc-v2 .*-address $E2E_NODE_DIR/run/containerd/containerd.sock" || true); do
    rss=$(ps -o rss= -p "$pid" 2>/dev/null | tr -d ' ') || continue
    shims=$((shims + ${rss:-0}))
    n=$((n + 1))
  done
  printf '  %-24s %5d MiB\n' "$n pod shims" $((shims / 1024))
  printf '  %-24s %5d MiB (RSS; shared binary text counted per process)\n' total $(((total + shims) / 1024))
}
e2e_log "memory of the idle node:"
memory >&2

set +e
cd "$here/../.."
go test -tags "${E2E_GO_TEST_TAGS:-realcluster}" -count=1 -v -timeout "${E2E_GO_TEST_TIMEOUT:-30m}" \
  ${E2E_GO_TEST_RUN:+-run "$E2E_GO_TEST_RUN"} ./test/realcluster/
rc=$?
set -e
e2e_log "suite $(($(date +%s) - t_up))s, exit $rc"
e2e_log "memory after the suite:"
memory >&2
exit $rc
