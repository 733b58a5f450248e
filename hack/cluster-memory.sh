#!/usr/bin/env bash
# Prints the resident memory of the local cluster: each component (of every node), the containerd shims, the
# containers (everything in the cluster's cgroup), and the total.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
. "$HACK_DIR/lib/cluster.sh"

rss_kib() {
  local total=0 pid kib
  for pid in "$@"; do
    kib=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
    total=$((total + ${kib:-0}))
  done
  echo "$total"
}

total=0
# The nodes beside the host's run their own containerd, kubelet and kube-proxy (name@node).
for component in "${COMPONENTS[@]}" "${ADDONS[@]}" $(node_components); do
  if pid=$(component_pid "$component"); then
    kib=$(rss_kib "$pid"); total=$((total + kib))
    printf '%-26s %6d MiB\n' "$component" $((kib / 1024))
  fi
done
# shellcheck disable=SC2046
kib=$(rss_kib $(shim_pids)); total=$((total + kib))
printf '%-26s %6d MiB  (%d processes)\n' "containerd shims" $((kib / 1024)) "$(shim_pids | wc -l)"
# shellcheck disable=SC2046
kib=$(rss_kib $(cgroup_pids)); total=$((total + kib))
printf '%-26s %6d MiB  (%d processes)\n' "containers and sandboxes" $((kib / 1024)) "$(cgroup_pids | wc -l)"
printf '%-26s %6d MiB\n' total $((total / 1024))
