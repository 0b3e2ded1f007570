# shellcheck shell=bash
# Shared by deploy/image/build and deploy/image/smoke (sourced, not run).
#
# What running containers needs on this kind of machine (found by trying, see deploy/image/README.md):
# rootful podman; runc, because crun refuses cgroups in "hybrid" mode (v1 controllers plus a v2
# mount); and explicit --ulimit values no higher than the current hard limits, because podman's
# default (nofile=1048576) needs CAP_SYS_RESOURCE, which the CI machines do not grant.
# Override with SSE_ENFORCER_OCI_RUNTIME (e.g. crun) where those limits do not apply.

IMAGE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$IMAGE_DIR/../.." && pwd)
CACHE=${SSE_ENFORCER_CACHE:-$HOME/.cache/sse-enforcer}
IMAGE_CACHE=$CACHE/image
IMAGE_NAME=localhost/sse-enforcer
VERSION=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$ROOT/enforcer/__init__.py")
IMAGE=$IMAGE_NAME:$VERSION

log() { printf '[image] %s\n' "$*" >&2; }
die() { printf '[image] error: %s\n' "$*" >&2; exit 1; }

oci_runtime() {
  if [ -n "${SSE_ENFORCER_OCI_RUNTIME:-}" ]; then
    echo "$SSE_ENFORCER_OCI_RUNTIME"
  elif command -v runc >/dev/null; then
    echo runc
  else
    echo crun
  fi
}

# Flags every `podman run` and `podman build` here takes. nproc: runc is refused above 32768 here
# (found by trying), whatever the shell's own limit says.
container_flags() {
  local nofile nproc
  nofile=$(ulimit -Hn)
  nproc=$(ulimit -Hu)
  [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ] && nproc=32768
  printf '%s\n' --runtime "$(oci_runtime)" --ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc"
}

# Installs podman, runc and mmdebstrap from the distribution's packages when missing (as root with
# apt-get, as on CI); elsewhere says what to install.
ensure_tools() {
  local tool missing=()
  for tool in podman runc mmdebstrap; do command -v "$tool" >/dev/null || missing+=("$tool"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing ${missing[*]} with apt-get"
    apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
      "${missing[@]}" >&2 || die "apt-get could not install ${missing[*]}"
  else
    die "missing ${missing[*]}: install the packages podman runc mmdebstrap (as root)"
  fi
}
