# Shared settings for the hack/ scripts. Sourced, never run.
HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPO_ROOT=$(cd "$HACK_DIR/.." && pwd)
# shellcheck source=../versions.env
. "$HACK_DIR/versions.env"

# Built binaries and images live outside the work tree, keyed by version, so a warm machine never rebuilds.
CACHE_DIR=${ETCD_OP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/etcd-op}
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
