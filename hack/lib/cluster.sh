# Layout, addresses and process handling of the local test cluster. Sourced after common.sh, never run.
# Everything the cluster creates on the host is named here, so cluster-down.sh can remove exactly that.

STATE=${ETCD_OP_STATE:-/var/lib/etcd-op-local}
NODE_NAME=etcdop-node
BRIDGE=etcdop0
POD_CIDR=10.88.0.0/16
# The bridge's address is the node's address: pods reach the apiserver and the kubelet through it.
NODE_IP=10.88.0.1
# Nodes beside the first (hack/lib/nodes.sh): addresses on a bridge of their own, a /24 each of 10.89.0.0/16
# for their pods. Every kube-proxy counts both pod ranges as the cluster's.
NODE_BRIDGE=etcdop1
NODE_LINK_CIDR=10.87.0.0/24
NODE_GATEWAY=10.87.0.1
CLUSTER_CIDR=10.88.0.0/15
MAX_NODES=6
SERVICE_CIDR=10.96.0.0/16
KUBERNETES_SERVICE_IP=10.96.0.1
DNS_SERVICE_IP=10.96.0.10
APISERVER_PORT=6443
APISERVER_ETCD_PORT=2479
# A cgroup of its own, so cleanup finds every container process even when the kubelet and containerd are gone.
CGROUP_PARENT=etcdop
# Our own iptables chains, jumped to from the built-in ones.
OWN_CHAIN=ETCDOP

node_name() { if [ "$1" = 1 ]; then echo "$NODE_NAME"; else echo "$NODE_NAME-$1"; fi; }
node_ip() { echo "${NODE_GATEWAY%.*}.$1"; }
# Three zones: the host's node alone in zone-a, the others alternating between zone-b and zone-c.
node_zone() { if [ "$1" = 1 ]; then echo zone-a; elif (($1 % 2 == 0)); then echo zone-b; else echo zone-c; fi; }
# The network namespaces of the nodes beside the first are named after them.
own_netns() { ip netns list 2>/dev/null | awk -v prefix="$NODE_NAME-" 'index($1, prefix) == 1 { print $1 }'; }

PKI=$STATE/pki
CONTAINERD_SOCK=$STATE/containerd/containerd.sock
KUBELET_ROOT=$STATE/kubelet
VOLUMES_DIR=$STATE/volumes
# Components in start order; stopped in reverse.
COMPONENTS=(containerd etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy provisioner kube-router)
# Started on demand by hack/cert-manager.sh and hack/s3proxy.sh, for the scenarios that use them; stopped with
# the cluster.
CERT_MANAGER_COMPONENTS=(cert-manager-controller cert-manager-cainjector)
ADDONS=("${CERT_MANAGER_COMPONENTS[@]}" s3proxy)
# The S3-compatible store of the backup scenarios: on the node's address, so pods reach it as the host does.
S3PROXY_PORT=9000
S3PROXY_BUCKET=etcd-backups

export PATH=/usr/local/go/bin:/usr/local/sbin:/usr/sbin:/sbin:$PATH

pid_file() { echo "$STATE/pids/$1.pid"; }

# Prints the pid of a component if it is still the process we started: the pid is alive and its command line
# still names our state folder (pids are reused).
component_pid() {
  local file pid; file=$(pid_file "$1")
  [ -f "$file" ] || return 1
  pid=$(<"$file")
  [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -F -- "$STATE" >/dev/null || return 1
  echo "$pid"
}

# start_component NAME COMMAND...: runs detached in its own session, logging to $STATE/logs/NAME.log.
start_component() {
  local name=$1; shift
  mkdir -p "$STATE/logs" "$STATE/pids"
  log "starting $name"
  # fd 9 is the cluster lock: components must not inherit it, or they would hold it for their lifetime.
  setsid "$@" </dev/null >>"$STATE/logs/$name.log" 2>&1 9>&- &
  echo $! >"$(pid_file "$name")"
}

# stop_pid PID [GRACE_SECONDS]: TERM, then KILL after the grace period.
stop_pid() {
  local pid=$1 grace=${2:-10} i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < grace * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  log "process $pid did not exit within ${grace}s; killing it"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
}

stop_component() {
  local pid
  if pid=$(component_pid "$1"); then
    log "stopping $1 ($pid)"
    stop_pid "$pid" "${2:-10}"
  fi
  rm -f "$(pid_file "$1")"
}

# wait_until SECONDS DESCRIPTION COMMAND...: polls COMMAND once a second, bounded.
wait_until() {
  local timeout=$1 what=$2 i; shift 2
  for ((i = 0; i < timeout; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  die "timed out after ${timeout}s waiting for $what (logs: $STATE/logs/)"
}

admin_curl() {
  curl -sf --max-time 5 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    "https://127.0.0.1:$APISERVER_PORT$1"
}

# The cgroup hierarchies' roots: each v1 controller's mount, or the single v2 hierarchy.
cgroup_roots() {
  if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    echo /sys/fs/cgroup
  else
    local hierarchy
    for hierarchy in /sys/fs/cgroup/*/; do echo "${hierarchy%/}"; done
  fi
}

cgroup_dirs() {
  local root
  for root in $(cgroup_roots); do
    [ -d "$root/$CGROUP_PARENT" ] && echo "$root/$CGROUP_PARENT"
  done
  return 0
}

# Pids of every process in our cgroup tree (containers and their pause sandboxes).
cgroup_pids() {
  local dir
  for dir in $(cgroup_dirs); do
    # Cgroups vanish while their processes die: a find that trips over one is not a failure.
    find "$dir" -name cgroup.procs -exec cat {} + 2>/dev/null || true
  done | sort -un
}

# containerd shims outlive containerd; ours are the ones told to talk to one of our sockets.
# shim_pids_of SOCKET_PATTERN: those of the sockets the (grep) pattern matches.
shim_pids_of() {
  local cmdline
  for cmdline in /proc/[0-9]*/cmdline; do
    if { tr '\0' ' ' <"$cmdline"; } 2>/dev/null | grep -- "^[^ ]*containerd-shim[^ ]* .*-address $1 " >/dev/null; then
      cmdline=${cmdline#/proc/}; echo "${cmdline%/cmdline}"
    fi
  done
}
shim_pids() { shim_pids_of "$STATE/[^ ]*containerd.sock"; }

# Components of the nodes beside the first, by their pid files (kubelet@<node> and so on).
node_components() {
  local file name
  for file in "$STATE"/pids/*@*.pid; do
    [ -f "$file" ] || continue
    name=${file##*/}; echo "${name%.pid}"
  done
}

# Our mounts (container root filesystems, pod volumes, network namespaces), deepest first.
own_mounts() {
  awk -v root="$STATE" '$5 == root || index($5, root "/") == 1 { print $5 }' /proc/self/mountinfo |
    awk '{ print length($0) " " $0 }' | sort -rn | cut -d' ' -f2-
}

iptables_cmds() {
  command -v iptables >/dev/null && echo iptables
  command -v ip6tables >/dev/null && echo ip6tables
  return 0
}

# Deletes the chains of the cluster's components (kubelet, kube-proxy, CNI plugins, ours) and the jumps to them.
remove_chains() {
  local ipt table rule chain
  for ipt in $(iptables_cmds); do
    for table in filter nat mangle; do
      "$ipt" -t "$table" -S >/dev/null 2>&1 || continue
      # Jumps from the built-in chains first; a chain in use cannot be deleted.
      while read -r rule; do
        eval "$ipt -w -t $table ${rule/#-A/-D}" 2>/dev/null || true
      done < <("$ipt" -t "$table" -S | grep -E -- "^-A (INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING) .*-j (KUBE-|CNI-|$OWN_CHAIN-)")
      for chain in $("$ipt" -t "$table" -S | awk '$1 == "-N" && $2 ~ /^(KUBE-|CNI-|'"$OWN_CHAIN"'-)/ { print $2 }'); do
        "$ipt" -w -t "$table" -F "$chain" 2>/dev/null || true
      done
      for chain in $("$ipt" -t "$table" -S | awk '$1 == "-N" && $2 ~ /^(KUBE-|CNI-|'"$OWN_CHAIN"'-)/ { print $2 }'); do
        "$ipt" -w -t "$table" -X "$chain" 2>/dev/null || true
      done
    done
  done
}

# kube-router's ipsets (IPv6 ones carry an "inet6:" prefix); they can go once no rule refers to them.
own_ipsets() {
  command -v ipset >/dev/null || return 0
  ipset list -n 2>/dev/null | grep -E '^(inet6:)?(KUBE-(SRC|DST)-|kube-router-)' || true
}

# kill_containers CONTAINER_PIDS SHIM_PIDS: kills the processes the first command lists (containers, once their
# kubelet is gone and cannot restart them) until none is left, bounded, then the shims the second lists.
kill_containers() {
  local i pid
  for ((i = 0; i < 5; i++)); do
    pid=$("$1")
    [ -z "$pid" ] && break
    # shellcheck disable=SC2086
    kill -KILL $pid 2>/dev/null || true
    sleep 0.5
  done
  # With their containers gone the shims have nothing left to save.
  pid=$("$2")
  # shellcheck disable=SC2086
  [ -z "$pid" ] || kill -KILL $pid 2>/dev/null || true
}

# Removes everything a running, crashed or half-started cluster left on the host. Safe to run at any time.
cleanup_cluster() {
  local i pid mount dir
  # The kubelets first, so they do not restart the containers we kill.
  local kubelets=() component
  for component in kubelet $(node_components | grep '^kubelet@'); do
    stop_component "$component" 15 &
    kubelets+=($!)
  done
  wait "${kubelets[@]}"
  kill_containers cgroup_pids shim_pids
  # The rest do not depend on each other to shut down: stop them all at once.
  # The apiserver's clients do not depend on each other to shut down: stop them all at once. Then the
  # apiserver while its etcd is still there (without etcd it hangs in its graceful shutdown), then etcd.
  log "stopping the other components"
  local stoppers=()
  for component in "${ADDONS[@]}" "${COMPONENTS[@]}" $(node_components); do
    case $component in etcd | kube-apiserver) continue ;; esac
    stop_component "$component" &
    stoppers+=($!)
  done
  wait "${stoppers[@]}"
  stop_component kube-apiserver
  stop_component etcd

  log "unmounting and removing links, chains and state"
  for ((i = 0; i < 3; i++)); do
    while read -r mount; do
      [ -n "$mount" ] && { umount "$mount" 2>/dev/null || umount -l "$mount" 2>/dev/null || true; }
    done < <(own_mounts)
    [ -z "$(own_mounts)" ] && break
  done
  [ -z "$(own_mounts)" ] || log "warning: mounts left under $STATE: $(own_mounts | tr '\n' ' ')"

  # Empty cgroups, leaves first.
  for dir in $(cgroup_dirs); do
    find "$dir" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done

  local veth
  for veth in $(ip -o link show master "$BRIDGE" 2>/dev/null | awk -F': ' '{ print $2 }' | cut -d@ -f1); do
    ip link del "$veth" 2>/dev/null || true
  done
  ip link del "$BRIDGE" 2>/dev/null || true
  # A node's namespace takes its links and chains with it; the host's end of its link goes too.
  local netns
  for netns in $(own_netns); do ip netns del "$netns" 2>/dev/null || true; done
  for veth in $(ip -o link show master "$NODE_BRIDGE" 2>/dev/null | awk -F': ' '{ print $2 }' | cut -d@ -f1); do
    ip link del "$veth" 2>/dev/null || true
  done
  ip link del "$NODE_BRIDGE" 2>/dev/null || true
  remove_chains
  local set
  for set in $(own_ipsets); do ipset destroy "$set" 2>/dev/null || true; done

  # The kubelet links container logs from this fixed folder into our state.
  if [ -d /var/log/containers ]; then
    find /var/log/containers -maxdepth 1 -type l -lname "$STATE/*" -delete 2>/dev/null || true
  fi
  rm -rf "$STATE"
}
