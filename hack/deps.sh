#!/usr/bin/env bash
# The one list of what this machine needs to build etcd-op and to run its local cluster, and its installer.
#   hack/deps.sh [build|cluster|all]     default all
#     build     the Rust build (protoc and the well-known .proto files for etcd-client, a C toolchain) and the
#               tools every script uses
#     cluster   build, plus what the local cluster runs on (containerd, runc, CNI plugins, iptables, ...)
# Checks each need by what the scripts use (a command or a file), installs the Debian packages behind the
# missing ones with one `apt-get update` and one `apt-get install`, says what it installs, and checks again.
# The Go and Rust toolchains are not Debian packages here (Debian's Go is too old): they are checked, and the
# error says how to get them.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
export PATH=/usr/local/go/bin:$HOME/.cargo/bin:/usr/local/sbin:/usr/sbin:/sbin:$PATH

# "package probe..." where a probe is a command name, or a path that must exist.
BUILD_NEEDS=(
  "protobuf-compiler protoc"
  # etcd-client's build script compiles protos that import google/protobuf/descriptor.proto; Debian ships the
  # well-known types only here, a package that `--no-install-recommends` leaves out.
  "libprotobuf-dev /usr/include/google/protobuf/descriptor.proto"
  "gcc cc"
  "libc6-dev /usr/include/stdio.h"
  "make make"
  "jq jq"
  "curl curl"
  "ca-certificates /etc/ssl/certs/ca-certificates.crt"
  "coreutils sha256sum base64 realpath stat timeout"
  "util-linux setsid flock nsenter"
  "findutils find"
  "tar tar"
  "gzip gzip"
  "libc-bin ldd"
)
CLUSTER_NEEDS=(
  "containerd containerd containerd-shim-runc-v2 ctr"
  "runc runc"
  "containernetworking-plugins /usr/lib/cni/bridge /usr/lib/cni/host-local /usr/lib/cni/portmap"
  "iptables iptables ip6tables"
  "conntrack conntrack"
  # kube-router's network policy controller keeps the pods each policy selects in ipsets.
  "ipset ipset"
  "iproute2 ip"
  "procps sysctl"
  "mount mount umount"
  # s3proxy, the S3-compatible store of the backup scenarios: a Java program, fetched from Maven Central.
  "openjdk-17-jre-headless java"
  "maven mvn"
)

# The Go release the pinned modules need at least (the highest `go` line of hack/tools/*/go.mod).
go_minimum() {
  sed -n 's/^go \([0-9.]*\)$/\1/p' "$HACK_DIR"/tools/*/go.mod | sort -V | tail -n1
}

check_toolchains() {
  local wanted have
  command -v cargo >/dev/null ||
    die "missing the Rust toolchain (cargo); install it with rustup: https://rustup.rs, then open a new shell"
  command -v go >/dev/null ||
    die "missing Go $(go_minimum) or newer; install it from https://go.dev/dl into /usr/local/go (Debian's golang is too old)"
  wanted=$(go_minimum)
  have=$(go env GOVERSION | sed 's/^go//')
  [ "$(printf '%s\n%s\n' "$wanted" "$have" | sort -V | head -n1)" = "$wanted" ] ||
    die "Go $have is older than $wanted, which the pinned Kubernetes, etcd and CoreDNS modules need; install Go $wanted or newer from https://go.dev/dl"
}

probe_ok() {
  case $1 in
    /*) [ -e "$1" ] ;;
    *) command -v "$1" >/dev/null ;;
  esac
}

# Prints the packages behind the needs (of the arrays named) that are not met.
missing_packages() {
  local group need package probes probe
  for group in "$@"; do
    local all="$group[@]"
    for need in "${!all}"; do
      read -r package probes <<<"$need"
      for probe in $probes; do
        if ! probe_ok "$probe"; then echo "$package"; break; fi
      done
    done
  done
}

main() {
  local groups
  case "${1:-all}" in
    build) groups=(BUILD_NEEDS) ;;
    cluster | all) groups=(BUILD_NEEDS CLUSTER_NEEDS) ;;
    *) die "usage: $0 [build|cluster|all]" ;;
  esac
  local missing
  mapfile -t missing < <(missing_packages "${groups[@]}")
  if [ ${#missing[@]} -gt 0 ]; then
    local install_cmd="apt-get install -y --no-install-recommends ${missing[*]}"
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
      die "missing packages: ${missing[*]}; install them with: sudo apt-get update && sudo $install_cmd"
    fi
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq ||
      die "apt-get update failed; install the packages by hand: apt-get update && $install_cmd"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
      die "could not install ${missing[*]}; try by hand: $install_cmd"
    mapfile -t missing < <(missing_packages "${groups[@]}")
    [ ${#missing[@]} -eq 0 ] ||
      die "installed, yet still missing what these packages should provide: ${missing[*]} (check: dpkg -L ${missing[0]})"
  fi
  check_toolchains
}

main "$@"
