// Package kubeletsim is the volume part of kubelet for simulated nodes: it watches
// the pods scheduled onto them and mounts their pvnfs volumes through each node's
// CSI plugin exactly as kubelet's volume manager does, so that tests and the demo can
// run real Deployments against real node plugins without a kubelet.
//
// For every pod on a managed node that uses a PersistentVolumeClaim (or a generic
// ephemeral volume) bound to a PersistentVolume of the driver, it calls
// NodeStageVolume once per volume per node and NodePublishVolume once per pod, with
// kubelet's paths (test/simnode), the PV's volume handle, volume attributes, fsType
// and mountOptions, the access mode kubelet derives from the PV's first access mode,
// and readOnly from the pod's volume. When a pod is deleted or terminates it calls
// NodeUnpublishVolume, and NodeUnstageVolume once the node has no pod of that volume
// left.
//
// It is level-triggered like kubelet's reconciler: a work queue keyed by (node,
// volume) compares what the pods want with what is mounted, so a key is never worked
// on twice at once, different volumes and nodes proceed in parallel, failures are
// retried with backoff (and reported as FailedMount events on the pods), and a
// periodic resync repairs anything a missed event left behind. Pods coming and going
// concurrently, and claims or volumes that bind after their pods are scheduled, are
// all handled by the same comparison. As kubelet does, it reads a pod's claim and PV
// from the API server when it first resolves them (watches only say when to look),
// and a pod keeps a volume it got even if its claim or PV goes later.
//
// Files: kubelet.go (options, start, stop), watch.go (which work an event makes),
// reconcile.go (resolving pods' volumes and the CSI calls), volume.go (claim to PV
// to CSI request), state.go (what is mounted; waiting for it), node.go (the node
// interface and its simnode implementation).
//
// What it does not do: containers (kwok marks pods Running), attach/detach
// (pvnfs's CSIDriver has attachRequired: false), secrets (a PV that names node stage
// or publish secrets is refused with an event; pvnfs uses none), podInfoOnMount and
// service-account tokens (pvnfs's CSIDriver asks for neither), fsGroup (pvnfs's
// fsGroupPolicy is None), periodic republish and volume stats. A terminating pod's
// volumes are unmounted when its deletion starts, where kubelet waits for its
// containers to stop; simulated pods have none.
//
// It never touches mounts itself: every mount is made by the node plugin under test.
package kubeletsim
