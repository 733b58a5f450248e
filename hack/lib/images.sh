# The test bed's images, built from cached binaries into $CACHE_DIR/images and imported into containerd.
# Sourced after common.sh and oci.sh, never run.

PAUSE_IMAGE=registry.k8s.io/pause:3.10
ETCD_IMAGE_REPO=quay.io/coreos/etcd
COREDNS_IMAGE=registry.k8s.io/coredns/coredns:v$COREDNS_VERSION
ECHO_IMAGE=localhost/echo:dev
IMAGES_DIR=$CACHE_DIR/images

# Builds one of the small Go programs of hack/tools into the cache, keyed by its source, and prints its path.
build_tool() {
  local name=$1 src="$HACK_DIR/tools/$1" key
  key=$(cat "$src"/*.go "$src/go.mod" | sha256sum | cut -c1-12)
  local out="$CACHE_DIR/tools/$name-$key/$name"
  if [ ! -x "$out" ]; then
    mkdir -p "$(dirname "$out")"
    (cd "$src" && go build -trimpath -ldflags "-s -w" -o "$out.tmp" .) && mv "$out.tmp" "$out"
  fi
  echo "$out"
}

# image_tar NAME KEY BUILD_FN: prints the cached archive of NAME at KEY, building it with BUILD_FN ROOTFS TAR if missing.
image_tar() {
  local name=$1 key=$2 build=$3 tar="$IMAGES_DIR/$1-$2.tar"
  if [ ! -f "$tar" ]; then
    local rootfs; rootfs=$(mktemp -d) && chmod 0755 "$rootfs"
    log "packing image $name ($key)"
    "$build" "$rootfs" "$tar"
    rm -rf "$rootfs"
  fi
  echo "$tar"
}

pack_pause() {
  local rootfs=$1 tar=$2
  install -m 0755 "$(build_tool pause)" "$rootfs/pause"
  oci_pack "$rootfs" "$PAUSE_IMAGE" "$tar" '["/pause"]' null 65535:65535
}

pack_echo() {
  local rootfs=$1 tar=$2
  oci_base_etc "$rootfs"
  install -m 0755 "$(build_tool echo)" "$rootfs/echo"
  oci_pack "$rootfs" "$ECHO_IMAGE" "$tar" '["/echo"]' null 65532:65532
}

pack_coredns() {
  local rootfs=$1 tar=$2 bin
  bin=$("$HACK_DIR/build.sh" coredns)
  oci_base_etc "$rootfs"
  install -m 0755 "$bin/coredns" "$rootfs/coredns"
  oci_pack "$rootfs" "$COREDNS_IMAGE" "$tar" '["/coredns"]' null 65532:65532
}

# Same layout as the upstream etcd images: binaries in /usr/local/bin, data in /var/lib/etcd, runs as root.
pack_etcd_at() {
  local version=$1 rootfs=$2 tar=$3 bin
  local set
  case $version in
    "$ETCD_VERSION") set=etcd ;;
    "$ETCD_OLD_VERSION") set=etcd-old ;;
    "$ETCD_NEXT_VERSION") set=etcd-next ;;
    *) die "no build of etcd $version" ;;
  esac
  bin=$("$HACK_DIR/build.sh" "$set")
  oci_base_etc "$rootfs"
  mkdir -p "$rootfs/usr/local/bin" "$rootfs/var/lib/etcd"
  chmod 0700 "$rootfs/var/lib/etcd"
  install -m 0755 "$bin/etcd" "$bin/etcdctl" "$bin/etcdutl" "$rootfs/usr/local/bin/"
  oci_pack "$rootfs" "$ETCD_IMAGE_REPO:v$version" "$tar" null '["/usr/local/bin/etcd"]' 0:0
}
pack_etcd() { pack_etcd_at "$ETCD_VERSION" "$@"; }
pack_etcd_old() { pack_etcd_at "$ETCD_OLD_VERSION" "$@"; }
pack_etcd_next() { pack_etcd_at "$ETCD_NEXT_VERSION" "$@"; }

# Prints "archive reference" for every image of the test bed, building what is missing.
images_build_all() {
  echo "$(image_tar pause "3.10-$(cat "$HACK_DIR"/tools/pause/* | sha256sum | cut -c1-12)" pack_pause) $PAUSE_IMAGE"
  echo "$(image_tar echo "dev-$(cat "$HACK_DIR"/tools/echo/* | sha256sum | cut -c1-12)" pack_echo) $ECHO_IMAGE"
  echo "$(image_tar coredns "v$COREDNS_VERSION" pack_coredns) $COREDNS_IMAGE"
  echo "$(image_tar etcd "v$ETCD_VERSION" pack_etcd) $ETCD_IMAGE_REPO:v$ETCD_VERSION"
  echo "$(image_tar etcd "v$ETCD_OLD_VERSION" pack_etcd_old) $ETCD_IMAGE_REPO:v$ETCD_OLD_VERSION"
  echo "$(image_tar etcd "v$ETCD_NEXT_VERSION" pack_etcd_next) $ETCD_IMAGE_REPO:v$ETCD_NEXT_VERSION"
}

images_import_all() {
  local address=$1 tar ref
  while read -r tar ref; do
    oci_import "$address" "$tar" "$ref"
  done < <(images_build_all)
}
