#!/usr/bin/env bash
# Runs hack/cluster-down.sh and checks that the cluster left nothing on the host, of any of its nodes: no
# process, shim, mount, cgroup, link, network namespace, route, iptables chain, ipset or state. Exits non-zero and lists what is left otherwise.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
. "$HACK_DIR/lib/cluster.sh"

# How the node fared, said before it goes: a run where every scenario timed out is explained by these lines
# (a node under disk pressure evicts every pod and takes no new one).
if [ -f "$STATE/kubeconfig" ] && kubectl=$("$HACK_DIR/kubectl.sh" 2>/dev/null); then
  KUBECONFIG=$STATE/kubeconfig "$kubectl" get node "$NODE_NAME" -o json 2>/dev/null |
    jq -r '"node: " + ([.status.conditions[] | select(.type != "Ready" and .status == "True") | .type] | if length == 0 then "no pressure" else join(", ") end)
      + "; taints: " + ([.spec.taints[]?.key] | if length == 0 then "none" else join(", ") end)' >&2 || true
fi
if [ -f "$STATE/logs/kubelet.log" ]; then
  log "kubelet: $(grep -ci 'eviction manager: attempting to reclaim' "$STATE/logs/kubelet.log" || true) attempts to reclaim a resource, the first: $(grep -i -m1 'eviction manager: attempting to reclaim' "$STATE/logs/kubelet.log" | grep -o 'resourceName="[^"]*"' || echo none)"
fi
log "disk: $(df -h --output=avail "$(dirname "$STATE")" | tail -1 | tr -d ' ') free where the cluster keeps its state"

"$HACK_DIR/cluster-down.sh"

left=()
for cmdline in /proc/[0-9]*/cmdline; do
  if { tr '\0' ' ' <"$cmdline"; } 2>/dev/null | grep -F -- "$STATE" >/dev/null; then
    pid=${cmdline#/proc/}; left+=("process ${pid%/cmdline}: $(tr '\0' ' ' <"$cmdline" | cut -c1-120)")
  fi
done
for pid in $(shim_pids); do left+=("containerd shim $pid"); done
while read -r mount; do [ -n "$mount" ] && left+=("mount $mount"); done < <(own_mounts)
for dir in $(cgroup_dirs); do left+=("cgroup $dir"); done
ip link show "$BRIDGE" >/dev/null 2>&1 && left+=("link $BRIDGE")
ip link show "$NODE_BRIDGE" >/dev/null 2>&1 && left+=("link $NODE_BRIDGE")
while read -r veth; do [ -n "$veth" ] && left+=("link $veth"); done < <(ip -o link show 2>/dev/null | awk -F': ' '$2 ~ /^etcdop-v[0-9]/ { print $2 }')
for netns in $(own_netns); do left+=("network namespace $netns"); done
while read -r route; do [ -n "$route" ] && left+=("route $route"); done < <(ip route show 2>/dev/null | grep -E '^10\.(87|89)\.' || true)
for ipt in $(iptables_cmds); do
  for table in filter nat mangle; do
    while read -r chain; do
      [ -n "$chain" ] && left+=("$ipt -t $table chain $chain")
    done < <("$ipt" -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^(KUBE-|CNI-|'"$OWN_CHAIN"'-)/ { print $2 }')
  done
done
for set in $(own_ipsets); do left+=("ipset $set"); done
[ -e "$STATE" ] && left+=("state folder $STATE")

if [ ${#left[@]} -gt 0 ]; then
  printf 'left behind: %s\n' "${left[@]}" >&2
  exit 1
fi
log "cluster-down left nothing behind"
