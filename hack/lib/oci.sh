# Packs a root filesystem folder into a single-layer OCI image archive and imports it into containerd,
# so the test bed needs no container engine and no registry. Sourced after common.sh, never run.

# Reproducible tar of a folder: same files give the same digest, so a cached image is stable across runs.
# Ownership is kept as is (numeric), so a rootfs prepared by root can give files to non-root users.
oci_layer_tar() {
  tar --sort=name --numeric-owner --mtime=@0 --format=posix \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime -C "$1" -c .
}

# Stores a file as a content-addressed blob of the layout in $1 and prints its digest and size.
oci_blob() {
  local layout=$1 file=$2 digest
  digest=$(sha256sum "$file" | cut -d' ' -f1)
  mv "$file" "$layout/blobs/sha256/$digest"
  echo "sha256:$digest $(stat -c %s "$layout/blobs/sha256/$digest")"
}

# oci_pack ROOTFS REF OUT_TAR ENTRYPOINT_JSON CMD_JSON USER [ENV...]
# Writes an OCI image archive (oci-layout, index.json, blobs) of ROOTFS named REF.
oci_pack() {
  local rootfs=$1 ref=$2 out=$3 entrypoint=$4 cmd=$5 user=$6; shift 6
  local work; work=$(mktemp -d)
  mkdir -p "$work/layout/blobs/sha256"

  oci_layer_tar "$rootfs" >"$work/layer.tar"
  local diff_id; diff_id=sha256:$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
  gzip -n -9 "$work/layer.tar"
  local layer_digest layer_size; read -r layer_digest layer_size < <(oci_blob "$work/layout" "$work/layer.tar.gz")

  local env_json; env_json=$(printf '%s\n' "PATH=/usr/local/bin:/usr/bin:/bin" "$@" | jq -R . | jq -cs .)
  jq -cn --arg diff "$diff_id" --arg user "$user" --argjson ep "$entrypoint" --argjson cmd "$cmd" --argjson env "$env_json" \
    '{created: "1970-01-01T00:00:00Z", architecture: "amd64", os: "linux",
      config: ({User: $user, Env: $env, WorkingDir: "/"} + (if $ep then {Entrypoint: $ep} else {} end)
               + (if $cmd then {Cmd: $cmd} else {} end)),
      rootfs: {type: "layers", diff_ids: [$diff]}, history: [{created: "1970-01-01T00:00:00Z", created_by: "hack/lib/oci.sh"}]}' \
    >"$work/config.json"
  local config_digest config_size; read -r config_digest config_size < <(oci_blob "$work/layout" "$work/config.json")

  jq -cn --arg cd "$config_digest" --argjson cs "$config_size" --arg ld "$layer_digest" --argjson ls "$layer_size" \
    '{schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $cd, size: $cs},
      layers: [{mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: $ld, size: $ls}]}' \
    >"$work/manifest.json"
  local manifest_digest manifest_size; read -r manifest_digest manifest_size < <(oci_blob "$work/layout" "$work/manifest.json")

  # containerd names the imported image after these annotations.
  jq -cn --arg md "$manifest_digest" --argjson ms "$manifest_size" --arg ref "$ref" \
    '{schemaVersion: 2, manifests: [{mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $md, size: $ms,
      platform: {architecture: "amd64", os: "linux"},
      annotations: {"io.containerd.image.name": $ref, "org.opencontainers.image.ref.name": $ref}}]}' \
    >"$work/layout/index.json"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$work/layout/oci-layout"

  mkdir -p "$(dirname "$out")"
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$work/layout" -cf "$out.tmp" .
  mv "$out.tmp" "$out"
  rm -rf "$work"
}

# oci_import ADDRESS TAR REF: imports into the CRI namespace and checks containerd knows the image by REF.
oci_import() {
  local address=$1 tar=$2 ref=$3
  ctr --address "$address" -n k8s.io images import "$tar" >/dev/null
  # Not grep -q: an early exit would fail the listing with SIGPIPE under pipefail.
  ctr --address "$address" -n k8s.io images ls -q | grep -xF "$ref" >/dev/null || die "importing $tar did not create image $ref"
}

# A minimal /etc for images of static binaries: users for numeric ids, and DNS through /etc/hosts then DNS.
oci_base_etc() {
  local rootfs=$1
  mkdir -p "$rootfs/etc" "$rootfs/tmp"
  chmod 1777 "$rootfs/tmp"
  printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
    'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$rootfs/etc/passwd"
  printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'nonroot:x:65532:' >"$rootfs/etc/group"
  echo 'hosts: files dns' >"$rootfs/etc/nsswitch.conf"
  mkdir -p "$rootfs/home/nonroot" && chown 65532:65532 "$rootfs/home/nonroot"
}
