#!/usr/bin/env bash
# A test of the set-up itself: removes packages that hack/deps.sh must put back (the well-known .proto files
# etcd-client's build needs, a tool the local cluster runs, and Maven, which fetches the test bed's
# s3proxy), runs hack/deps.sh, and checks that they are back and that protoc compiles a file importing
# google/protobuf/descriptor.proto. Needs root and apt; it
# changes the machine's packages, so it runs only on a machine given to it (CI), or when asked:
#   ETCD_OP_TEST_DEPS=1 hack/test-deps.sh
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
. "$HACK_DIR/lib/cluster.sh"

REMOVED=(libprotobuf-dev conntrack maven)
passed=0 failed=0

check() {
  local what=$1; shift
  if "$@" >/dev/null 2>&1; then
    passed=$((passed + 1)); log "ok: $what"
  else
    failed=$((failed + 1)); log "FAILED: $what"
  fi
}

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

protoc_finds_well_known_types() {
  local dir; dir=$(mktemp -d)
  printf 'syntax = "proto3";\nimport "google/protobuf/descriptor.proto";\nmessage M { google.protobuf.FileDescriptorProto f = 1; }\n' \
    >"$dir/m.proto"
  protoc -I "$dir" --descriptor_set_out="$dir/m.pb" "$dir/m.proto"
  local status=$?
  rm -rf "$dir"
  return "$status"
}

main() {
  [ "${CI:-}" = true ] || [ "${ETCD_OP_TEST_DEPS:-}" = 1 ] ||
    die "this test removes packages from the machine; run it with ETCD_OP_TEST_DEPS=1 if that is fine here"
  [ "$(id -u)" = 0 ] || die "needs root (apt-get remove and install)"
  component_pid containerd >/dev/null && die "the local cluster is running: stop it first (hack/cluster-down.sh)"
  log "removing ${REMOVED[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq "${REMOVED[@]}" >/dev/null 2>&1 || true
  local package
  for package in "${REMOVED[@]}"; do check "$package is gone before the set-up" bash -c "! dpkg-query -W -f='\${Status}' $package 2>/dev/null | grep -q 'install ok installed'"; done
  check "hack/deps.sh completes" "$HACK_DIR/deps.sh" all
  for package in "${REMOVED[@]}"; do check "hack/deps.sh put $package back" installed "$package"; done
  check "protoc compiles a file that imports descriptor.proto" protoc_finds_well_known_types
  check "hack/deps.sh is a quiet no-op once everything is there" bash -c "[ -z \"\$('$HACK_DIR/deps.sh' all 2>&1)\" ]"
  printf 'setup: %d passed, %d failed\n' "$passed" "$failed"
  [ "$failed" -eq 0 ]
}

main "$@"
