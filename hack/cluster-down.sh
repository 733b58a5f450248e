#!/usr/bin/env bash
# Stops the local test cluster started by hack/cluster-up.sh and removes everything it put on the host:
# processes (by pid), containers, mounts, cgroups, the bridge and its links, iptables chains, and the state folder.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
. "$HACK_DIR/lib/cluster.sh"

[ "$(id -u)" = 0 ] || die "cluster-down needs root"
mkdir -p "$(dirname "$STATE")"
exec 9>"$STATE.lock"
flock -w 600 9 || die "another cluster-up or cluster-down holds $STATE.lock"
started=$SECONDS
cleanup_cluster
log "cluster down in $((SECONDS - started))s"
