package main

import (
	"fmt"
	"sort"
	"strings"
)

// The explanations of missed targets. Each reads the run's own breakdown, so it
// names what took the time or the memory in that run, and says what would fix it;
// they come from investigating runs of this benchmark (the report says how). Keep
// them true when the code changes.

// causeRatio explains pvnfs taking longer than the lower bound, from where its
// PVCs spent the time: before their volume served, or after (the CSI machinery).
func causeRatio(r *Report, s *SizeResult) string {
	p := r.Chart.Controller.Provisioner
	before, after := s.Pvnfs.Serving.P50, s.Pvnfs.Create.P50-s.Pvnfs.Serving.P50
	toPV, toBound := s.Pvnfs.PVCreated.P50-before, s.Pvnfs.Create.P50-s.Pvnfs.PVCreated.P50
	why := fmt.Sprintf("per PVC (p50) %s pass until the volume serves, where the lower bound needs %s, and %s after: %s until csi-provisioner's PV exists (CreateVolume's answer, then the sidecar's create and two events with its client at `--kube-api-qps` %g, `--kube-api-burst` %d) and %s for kube-controller-manager's PV controller to bind the PVC",
		secs(before), secs(s.Lower.Create.P50), secs(after), secs(toPV), p.KubeAPIQPS, p.KubeAPIBurst, secs(toBound))
	if after >= before-s.Lower.Create.P50 {
		if toBound >= toPV {
			return why + fmt.Sprintf(". The binding is the larger part: the PV controller binds claims one at a time (one worker, several writes each), so %d PVs that appear within seconds queue there; no setting of pvnfs shortens it, and the lower bound, which has no user PVC, does not pay it. On a real cluster servers become ready over seconds, not all at once, and the queue stays short", s.N)
		}
		return why + fmt.Sprintf(". The PV's creation is the larger part: volumes serve in bunches and their PVs queue behind csi-provisioner's rate limit, which its events share. Fix: raise `controller.provisioner.kubeAPIQPS`/`kubeAPIBurst` in the chart; more `workerThreads` does not help, as %d volumes in flight at once only start the controller's creates later", s.N)
	}
	if s.N > p.WorkerThreads {
		return why + fmt.Sprintf(". The part before serving is the larger, and the controller's requests per volume are the lower bound's three creates: csi-provisioner gives pvnfs %d volumes at a time (`--worker-threads`) and CreateVolume holds its worker until the server serves, so the last of %d volumes start only as the first ones serve, where the lower bound's workers move on at once. More `workerThreads` removes the waves but not the time (all creates then share the controller's rate limit at once; see \"Worker threads\" below); the binding is kube-controller-manager's. A faster whole needs a higher `controller.kubeAPIQPS`, which speeds the lower bound as much", p.WorkerThreads, s.N)
	}
	return why + ". The part before serving is the larger: compare the controller's requests per volume (below) and its `--kube-api-qps` with the lower bound's client"
}

// causeRequests names the requests beyond the three creates.
func causeRequests(s *SizeResult) string {
	var extra []RequestCount
	for _, r := range s.CreateRequests.PerVolume {
		if !strings.HasPrefix(r.Request, "POST ") || r.Request == "POST events" {
			extra = append(extra, r)
		}
	}
	sort.Slice(extra, func(i, j int) bool { return extra[i].PerVolume > extra[j].PerVolume })
	var list []string
	for _, r := range extra {
		list = append(list, fmt.Sprintf("%s %.2f", r.Request, r.PerVolume))
	}
	return fmt.Sprintf("at N=%d the controller sent, beyond its three creates: %s per volume. PUT deployments with GET persistentvolumeclaims and events are the reconciler correcting Deployments it takes for edited ones (`TestControlPlaneNewDeploymentIsNotDrift` guards against it); GETs after POSTs are get-or-create reading back after a failed create. Find the sender in the controller's log at `--v=2`",
		s.N, strings.Join(list, ", "))
}

// causePublish explains slow publishes at many pods.
func causePublish(f *FanoutRow) string {
	return fmt.Sprintf("NodePublish reads the node's whole mount table twice per call (once for the staging and target checks, once to verify the new bind), and the table grows with every pod's bind mount (%d at the peak), so each call costs O(mounts), and more on a busy machine; fix: look up the staging and target mounts by path (statx mount IDs) instead of parsing every mount", f.Bind+f.NFS+f.Other)
}

// causeMounts explains a wrong number of NFS-leg mounts.
func causeMounts(r *Report) string {
	var seen []string
	for _, f := range r.Fanout {
		seen = append(seen, fmt.Sprintf("%d pods: %d NFS-leg, %d bind, %d elsewhere", f.Targets, f.NFS, f.Bind, f.Other))
	}
	return "mounts at the peak: " + strings.Join(seen, "; ") + ". More than one NFS-leg mount means NodeStageVolume or NodePublishVolume mounted the export again (a staging mount judged stale or hung is replaced); a mount elsewhere means a publish mounted NFS at the target instead of binding the staging mount. The plugin's log at `--v=2` shows which"
}

// causeRSS explains the controller's memory.
func causeRSS(f *FootprintResult) string {
	return fmt.Sprintf("with %d volumes the Go heap in use is %s of the %s resident: the informer caches hold every volume's backend PVC, Deployment, Service, pod and EndpointSlice, the namespace's Events and every PersistentVolume of the cluster, and Go lets the heap grow to twice the live data between collections. Fix: strip the fields pvnfs never reads in the informers' transform (status of Deployments, annotations of pods, ...), list Events only when explaining a failure instead of caching them, and set GOMEMLIMIT in the chart",
		f.Volumes, mib(f.HeapInUse), mib(f.Loaded.RSS))
}

// causeReadyToReturn explains a slow answer after the server pod is Ready.
func causeReadyToReturn(f *FootprintResult, cpus int) string {
	if f.ReadyToEndpoint.P95 >= f.EndpointToReturn.P95 {
		return fmt.Sprintf("pvnfs answers once the Service's endpoint is ready as well as the pod, because a node can only mount the ClusterIP then; kube-controller-manager's EndpointSlice controller marked the endpoint ready p95 %s after the pod, and pvnfs answered p95 %s after that. The EndpointSlice controller's queue is long while %d servers turn Ready within minutes on %d cores shared by the whole control plane; pvnfs cannot shorten it, and answering at pod Ready would only move the wait into the first NodeStageVolume (a ClusterIP without endpoints refuses connections), so pvnfs keeps waiting for it. On a real cluster servers turn Ready over seconds (image pull, nfsd start), and kube-controller-manager's `--concurrent-service-endpoint-syncs` and `--kube-api-qps` bound this delay",
			signedMs(f.ReadyToEndpoint.P95), signedMs(f.EndpointToReturn.P95), f.Volumes, cpus)
	}
	return fmt.Sprintf("pvnfs's own part dominates: the endpoint was ready p95 %s after the pod, and CreateVolume answered p95 %s after that. The waiter is woken by informer events of the volume; a slow wake-up means the informers' event handlers or the volume lookup are slow under load: profile the controller (`go tool pprof`) during the burst",
		signedMs(f.ReadyToEndpoint.P95), signedMs(f.EndpointToReturn.P95))
}
