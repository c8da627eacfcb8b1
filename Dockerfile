# syntax=docker/dockerfile:1
#
# Both pvnfs images from one Go build:
#   docker build --target pvnfs-csi    -t pvnfs-csi:dev .
#   docker build --target pvnfs-server -t pvnfs-server:dev .
# Binaries are static (CGO_ENABLED=0); the runtime images add only the Debian
# packages each one runs. See docs/server.md for what a real node must check.

ARG GO_VERSION=1.26
ARG DEBIAN_RELEASE=bookworm

FROM golang:${GO_VERSION}-${DEBIAN_RELEASE} AS build
WORKDIR /src
# Dependencies first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY cmd/ cmd/
COPY pkg/ pkg/
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/pvnfs/pvnfs/pkg/version.Version=${VERSION}" \
      -o /out/ ./cmd/pvnfs-csi ./cmd/pvnfs-server

# The CSI driver (controller and node plugin). The node plugin mounts NFS: it needs
# mount.nfs (nfs-common) and mount(8) (mount, util-linux).
FROM debian:${DEBIAN_RELEASE}-slim AS pvnfs-csi
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      nfs-common mount util-linux \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/pvnfs-csi /usr/local/bin/pvnfs-csi
ENTRYPOINT ["/usr/local/bin/pvnfs-csi"]

# One volume's NFS server. Both engines are in the image, so a StorageClass's
# serverEngine needs no other image:
#   kernel:  exportfs, rpc.mountd, nfsdcld (nfs-kernel-server), mount(8)
#   ganesha: ganesha.nfsd and its VFS backend (nfs-ganesha, nfs-ganesha-vfs), and
#            dbus-daemon for the private bus Ganesha publishes its statistics on.
# /run/pvnfs and /tmp are emptyDirs in the Ganesha pod, whose root is read-only.
# Ganesha finds the filesystem of its export in /etc/mtab, which a minimal Debian
# root may lack (debootstrap's does) and a read-only root cannot get at run time.
FROM debian:${DEBIAN_RELEASE}-slim AS pvnfs-server
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      nfs-kernel-server nfs-ganesha nfs-ganesha-vfs dbus-daemon mount util-linux \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /run/pvnfs /var/lib/nfs/rpc_pipefs \
 && ln -sf ../proc/self/mounts /etc/mtab
COPY --from=build /out/pvnfs-server /usr/local/bin/pvnfs-server
# NFS and /healthz, /readyz, /metrics (serverconfig.DefaultHealthPort).
EXPOSE 2049/tcp 9102/tcp
# pvnfs-server is PID 1. Its helpers run in the foreground as its own children,
# which it waits for; none of them daemonizes, so no init process is needed.
ENTRYPOINT ["/usr/local/bin/pvnfs-server"]
