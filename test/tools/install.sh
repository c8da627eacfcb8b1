#!/usr/bin/env bash
# Installs everything the tests, the demo and the benchmarks need that is not a Go
# dependency of the module itself: Debian packages, the Kubernetes control plane built
# from the k8s.io/kubernetes module, kwok, the csi-provisioner, csi-resizer and
# csi-snapshotter sidecars with the snapshot-controller and its CRDs, and helm.
#
# Binaries go to $PVNFS_TOOLS_DIR (default ~/.cache/pvnfs/tools), outside the
# repository, so that a fresh clone on the same machine reuses them. Each tool lives in
# a directory named after its version, so bumping a version rebuilds only that tool.
#
# Usage: test/tools/install.sh [all|apt|kube|kwok|provisioner|resizer|snapshotter|helm|vmlab]...
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=versions.sh
. "$here/versions.sh"

log() { printf '==> %s\n' "$*" >&2; }

# apt installs the Debian packages. It runs apt-get only when something is missing, so
# a machine that has them all needs no network.
apt_packages=(etcd-server openssl util-linux iproute2 procps psmisc e2fsprogs dbus-daemon
  nfs-ganesha nfs-ganesha-vfs libnfs-utils)
install_apt() { apt_install "${apt_packages[@]}"; }

# apt_install installs the Debian packages given that are missing.
apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # The Debian etcd and ganesha packages start services through their maintainer
  # scripts; the tests start their own instances, so keep the packaged ones off.
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
}

# build_with_replaces builds Go commands from a module whose go.mod has replace
# directives pointing into its own tree (k8s.io/kubernetes, external-provisioner):
# `go install pkg@version` refuses those, so build inside a throw-away module that
# requires the module and replaces each staging module with its published version.
#   $1 module path, $2 module version, $3 version for the k8s.io staging modules,
#   $4 output directory, $5 -ldflags, rest: command package paths.
build_with_replaces() {
  local mod=$1 ver=$2 staging=$3 out=$4 ldflags=$5; shift 5
  local work; work=$(mktemp -d)
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" RETURN
  (
    cd "$work"
    go mod init pvnfs.io/toolbuild >/dev/null 2>&1
    go mod edit -require="$mod@$ver"
    local gomod
    gomod=$(go mod download -json "$mod@$ver" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
    # Every in-tree replace of a k8s.io module becomes the published staging version,
    # and one of another module (external-snapshotter's client/v8) that module at the
    # main module's version, which is published with it; replaces that already name a
    # published version are kept as they are.
    sed -n 's#^\(replace \)\{0,1\}[[:space:]]*\([^ ]*\) => \./.*#\2#p' "$gomod" | while read -r m; do
      case $m in
      k8s.io/*) go mod edit -replace="$m=$m@$staging" ;;
      *) go mod edit -replace="$m=$m@$ver" ;;
      esac
    done
    sed -n 's#^\(replace \)\{0,1\}[[:space:]]*\([^ ]*\) => \([^ .][^ ]*\) \(v[^ ]*\)$#\2=\3@\4#p' "$gomod" |
      while read -r r; do go mod edit -replace="$r"; done
    # Keep the module's own pins for everything else (grpc, otel, ...): copying its
    # requirements avoids a newer minor version that it was not built with.
    go mod edit -go="$(sed -n 's/^go //p' "$gomod")"
    sed -n '/^require (/,/^)/p' "$gomod" | grep -v -e '^require' -e '^)' -e '=> \./' |
      awk '{print $1"@"$2}' | grep -v '^k8s.io/.*@v0.0.0$' | while read -r r; do
        go mod edit -require="$r"
      done
    printf 'package tools\n\nimport (\n' >tools.go
    for p in "$@"; do printf '\t_ "%s"\n' "$p" >>tools.go; done
    printf ')\n' >>tools.go
    GOFLAGS=-mod=mod go mod tidy >/dev/null 2>&1 || GOFLAGS=-mod=mod go mod tidy
    mkdir -p "$out"
    for p in "$@"; do
      log "go build $p ($ver)"
      CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "$ldflags" -o "$out/$(basename "$p")" "$p"
    done
  )
}

# vmlab builds the VM lab's guest (test/vmlab/image/build.sh): Debian's kernel and a
# Debian root with the pvnfs images' packages, booted by qemu under software
# emulation. The directory is named after a hash of the recipe, so a change to it
# builds a new guest.
vmlab_packages=(qemu-system-x86 debootstrap busybox-static cpio kmod xz-utils e2fsprogs)
install_vmlab() {
  local dir="$PVNFS_TOOLS_DIR/vmlab-$VMLAB_VERSION"
  [ -f "$dir/rootfs.ext4" ] && [ -f "$dir/initrd.cpio" ] && return 0
  apt_install "${vmlab_packages[@]}"
  # The kernel package is resolved from apt's lists, which a fresh machine lacks.
  apt-cache show linux-image-amd64 >/dev/null 2>&1 || apt-get update -qq
  rm -rf "$dir.tmp"
  bash "$repo/test/vmlab/image/build.sh" "$dir.tmp"
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
  # Guests of earlier recipes are 400 MB each and nothing uses them any more.
  find "$PVNFS_TOOLS_DIR" -maxdepth 1 -name 'vmlab-*' ! -name "vmlab-$VMLAB_VERSION" -exec rm -rf {} +
}

install_kube() {
  local dir="$PVNFS_TOOLS_DIR/kubernetes-$KUBE_VERSION"
  [ -x "$dir/kube-apiserver" ] && [ -x "$dir/kube-controller-manager" ] &&
    [ -x "$dir/kube-scheduler" ] && [ -x "$dir/kubectl" ] && return 0
  local staging="v0.${KUBE_VERSION#v1.}"
  build_with_replaces k8s.io/kubernetes "$KUBE_VERSION" "$staging" "$dir.tmp" \
    "-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(echo "$KUBE_VERSION" | cut -d. -f2)" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
}

install_kwok() {
  local dir="$PVNFS_TOOLS_DIR/kwok-$KWOK_VERSION"
  [ -x "$dir/kwok" ] && return 0
  log "go install sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  mkdir -p "$dir.tmp"
  GOBIN="$dir.tmp" CGO_ENABLED=0 go install -trimpath "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
}

install_provisioner() {
  local dir="$PVNFS_TOOLS_DIR/external-provisioner-$PROVISIONER_VERSION"
  [ -x "$dir/csi-provisioner" ] && return 0
  build_with_replaces github.com/kubernetes-csi/external-provisioner/v6 "$PROVISIONER_VERSION" \
    "$PROVISIONER_STAGING" "$dir.tmp" "-s -w -X main.version=$PROVISIONER_VERSION" \
    github.com/kubernetes-csi/external-provisioner/v6/cmd/csi-provisioner
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
}

# snapshotter builds the VolumeSnapshot pieces of external-snapshotter: the cluster's
# snapshot-controller, the csi-snapshotter sidecar, and the snapshot CRDs from its
# client module (the files the project's own deploy/ applies).
install_snapshotter() {
  local dir="$PVNFS_TOOLS_DIR/external-snapshotter-$SNAPSHOTTER_VERSION"
  [ -x "$dir/snapshot-controller" ] && [ -x "$dir/csi-snapshotter" ] &&
    [ -f "$dir/crd/snapshot.storage.k8s.io_volumesnapshots.yaml" ] && return 0
  build_with_replaces github.com/kubernetes-csi/external-snapshotter/v8 "$SNAPSHOTTER_VERSION" \
    "$SNAPSHOTTER_STAGING" "$dir.tmp" "-s -w -X main.version=$SNAPSHOTTER_VERSION" \
    github.com/kubernetes-csi/external-snapshotter/v8/cmd/snapshot-controller \
    github.com/kubernetes-csi/external-snapshotter/v8/cmd/csi-snapshotter
  local client
  client=$(go mod download -json "github.com/kubernetes-csi/external-snapshotter/client/v8@$SNAPSHOTTER_VERSION" |
    sed -n 's/.*"Dir": "\(.*\)",/\1/p')
  mkdir -p "$dir.tmp/crd"
  for kind in volumesnapshotclasses volumesnapshotcontents volumesnapshots; do
    install -m 0644 "$client/config/crd/snapshot.storage.k8s.io_$kind.yaml" "$dir.tmp/crd/"
  done
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
}

install_helm() {
  local dir="$PVNFS_TOOLS_DIR/helm-$HELM_VERSION"
  [ -x "$dir/helm" ] && return 0
  log "go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  mkdir -p "$dir.tmp"
  GOBIN="$dir.tmp" CGO_ENABLED=0 go install -trimpath "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
}

# csi-resizer's module has no in-tree replaces: go install builds it as published.
install_resizer() {
  local dir="$PVNFS_TOOLS_DIR/external-resizer-$RESIZER_VERSION"
  [ -x "$dir/csi-resizer" ] && return 0
  log "go install github.com/kubernetes-csi/external-resizer/v2/cmd/csi-resizer@$RESIZER_VERSION"
  mkdir -p "$dir.tmp"
  GOBIN="$dir.tmp" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w -X main.version=$RESIZER_VERSION" \
    "github.com/kubernetes-csi/external-resizer/v2/cmd/csi-resizer@$RESIZER_VERSION"
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
}

mkdir -p "$PVNFS_TOOLS_DIR"
# Test packages run in parallel and each may ask for the tools; one builds, the
# others wait for it instead of building the same thing into the same place.
exec 9>"$PVNFS_TOOLS_DIR/.install.lock"
flock 9

targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(all)
for t in "${targets[@]}"; do
  case $t in
  all) install_apt; install_kube; install_kwok; install_provisioner; install_resizer; install_snapshotter; install_helm; install_vmlab ;;
  apt) install_apt ;;
  kube) install_kube ;;
  kwok) install_kwok ;;
  provisioner) install_provisioner ;;
  resizer) install_resizer ;;
  snapshotter) install_snapshotter ;;
  helm) install_helm ;;
  vmlab) install_vmlab ;;
  *) echo "unknown tool: $t (accepted: all apt kube kwok provisioner resizer snapshotter helm vmlab)" >&2; exit 2 ;;
  esac
done
