#!/usr/bin/env bash
# Packs the operator binary into an image laid out like a distroless/cc final stage (binary at /manager, the
# glibc and libgcc it links against, user nonroot 65532) and, when the local cluster runs, imports it.
#   hack/image-operator.sh [BINARY]     default target/release/etcd-op; prints the image archive
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
. "$HACK_DIR/lib/cluster.sh"
. "$HACK_DIR/lib/oci.sh"
. "$HACK_DIR/lib/nodes.sh"

OPERATOR_IMAGE=${OPERATOR_IMAGE:-localhost/etcd-op:dev}

# Copies the shared libraries BINARY needs, at the paths the dynamic loader will look for them.
copy_libraries() {
  local binary=$1 rootfs=$2 lib
  for lib in $(ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
    mkdir -p "$rootfs$(dirname "$lib")"
    cp -L "$lib" "$rootfs$lib"
  done
}

main() {
  local binary=${1:-$REPO_ROOT/target/release/etcd-op}
  [ -x "$binary" ] || die "$binary does not exist; build it with: cargo build --release -p etcd-op"
  local rootfs; rootfs=$(mktemp -d) && chmod 0755 "$rootfs"
  oci_base_etc "$rootfs"
  # The authorities TLS clients trust, where distroless keeps them: an object store over https is checked
  # against them (and the S3 client refuses to start without any).
  mkdir -p "$rootfs/etc/ssl/certs"
  cp -L /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
  install -m 0755 "$binary" "$rootfs/manager"
  copy_libraries "$binary" "$rootfs"
  local tar="$CACHE_DIR/images/etcd-op-dev.tar"
  oci_pack "$rootfs" "$OPERATOR_IMAGE" "$tar" '["/manager"]' null 65532:65532
  rm -rf "$rootfs"
  # Into every node whose containerd runs: the manager may be scheduled to any of them.
  local sock
  for sock in $(containerd_sockets); do
    oci_import "$sock" "$tar" "$OPERATOR_IMAGE"
    log "imported $OPERATOR_IMAGE into $sock"
  done
  echo "$tar"
}

main "$@"
