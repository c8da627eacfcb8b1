# Versions of the tools the tests run. The control plane follows k8s.io/client-go in
# go.mod (v0.X.Y -> v1.X.Y), so the API server under test and the client the driver is
# built with never drift apart; everything else is pinned here.
_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
_clientgo=$(grep -o "k8s.io/client-go v[0-9.]*" "$_repo/go.mod" | head -1 | cut -d" " -f2)
KUBE_VERSION=${KUBE_VERSION:-v1.${_clientgo#v0.}}
KWOK_VERSION=${KWOK_VERSION:-v0.8.0}
PROVISIONER_VERSION=${PROVISIONER_VERSION:-v6.3.0}
# v6.4.0 needs sig-storage-lib-external-provisioner v13.1.0, which the module proxy
# does not serve; v6.3.0 builds from published modules only.
# The staging version external-provisioner's replaces are resolved against.
PROVISIONER_STAGING=${PROVISIONER_STAGING:-v0.${_clientgo#v0.}}
# csi-resizer v2.3.0 passes VolumeAttributesClass parameters (GA) to ModifyVolume.
RESIZER_VERSION=${RESIZER_VERSION:-v2.3.0}
# external-snapshotter: snapshot-controller, csi-snapshotter and the snapshot CRDs.
# v8.6.0 is built against Kubernetes 1.36 and CSI spec 1.12, as the control plane and
# pvnfs are; v8.7.0 already needs the 1.37 libraries. Its replaces name their versions.
SNAPSHOTTER_VERSION=${SNAPSHOTTER_VERSION:-v8.6.0}
SNAPSHOTTER_STAGING=${SNAPSHOTTER_STAGING:-v0.${_clientgo#v0.}}
HELM_VERSION=${HELM_VERSION:-v3.21.4}
# The VM lab's guest is named after its recipe: editing it builds a new one.
VMLAB_VERSION=${VMLAB_VERSION:-$(cat "$_repo/test/vmlab/image/build.sh" "$_repo/test/vmlab/image/init" | sha256sum | cut -c1-12)}
PVNFS_TOOLS_DIR=${PVNFS_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pvnfs/tools}
export KUBE_VERSION KWOK_VERSION PROVISIONER_VERSION PROVISIONER_STAGING RESIZER_VERSION SNAPSHOTTER_VERSION SNAPSHOTTER_STAGING HELM_VERSION VMLAB_VERSION PVNFS_TOOLS_DIR
