package controller

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/pvnfs/pvnfs/pkg/parameters"
	"github.com/pvnfs/pvnfs/pkg/serverconfig"
	"github.com/pvnfs/pvnfs/pkg/volume"
	"github.com/pvnfs/pvnfs/test/localcluster"
)

func TestControlPlaneCreateVolumeBuildsServerAndDeleteRemovesAll(t *testing.T) {
	d := startDriver(t)
	params := map[string]string{
		parameters.BackendStorageClass: backendClass, parameters.NFSVersion: "4.1",
		parameters.ExportOwner: "33:33", parameters.ExportMode: "2775", parameters.FailoverTolerationSeconds: "15",
		parameters.ServerTolerations: `[{"key":"dedicated","operator":"Equal","value":"storage","effect":"NoSchedule"}]`,
		parameters.PVCNameKey:        "wordpress", parameters.PVCNamespaceKey: "web", parameters.PVNameKey: "pvc-1111",
	}
	name := "pvc-0b5e3e4c-9c57-4a1e-8a0b-4e0f2b6f1d2a"
	start := time.Now()
	resp, err := d.CreateVolume(callCtx(t, time.Minute), createReq(name, params))
	if err != nil {
		t.Fatalf("CreateVolume: %v", err)
	}
	t.Logf("CreateVolume returned after %v", time.Since(start).Round(time.Millisecond))
	v := resp.GetVolume()
	if v.VolumeId != name || v.CapacityBytes != testGiB {
		t.Errorf("volume = %v", v)
	}
	vctx, err := volume.ParseContext(v.VolumeContext)
	if err != nil {
		t.Fatalf("volume context %v: %v", v.VolumeContext, err)
	}
	if _, err := netip.ParseAddr(vctx.Server); err != nil || vctx.Share != volume.ExportPath || vctx.NFSVersion != "4.1" {
		t.Errorf("volume context = %+v", vctx)
	}

	ctx := callCtx(t, 30*time.Second)
	k := d.cluster.Client
	obj := "pvnfs-" + name
	pvc, err := k.CoreV1().PersistentVolumeClaims(d.ns).Get(ctx, obj, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pvc.Status.Phase != corev1.ClaimBound || *pvc.Spec.StorageClassName != backendClass ||
		pvc.Spec.AccessModes[0] != corev1.ReadWriteOnce || pvc.Annotations[volume.AnnotationClusterIP] != vctx.Server {
		t.Errorf("backend PVC: phase %s class %v modes %v annotations %v", pvc.Status.Phase, *pvc.Spec.StorageClassName, pvc.Spec.AccessModes, pvc.Annotations)
	}
	svc, err := k.CoreV1().Services(d.ns).Get(ctx, obj, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if svc.Spec.ClusterIP != vctx.Server || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 2049 || svc.Spec.Ports[0].Protocol != corev1.ProtocolTCP {
		t.Errorf("service spec = %+v", svc.Spec)
	}
	dep, err := k.AppsV1().Deployments(d.ns).Get(ctx, obj, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkDeployment(t, dep, name)
	for _, o := range []metav1.Object{pvc, svc, dep} {
		a, l := o.GetAnnotations(), o.GetLabels()
		if a[volume.AnnotationPVCName] != "wordpress" || a[volume.AnnotationPVCNamespace] != "web" || a[volume.AnnotationPVName] != "pvc-1111" ||
			a[volume.AnnotationVolumeName] != name || l[volume.LabelVolumeID] != name || l[volume.LabelManagedBy] != volume.ManagedBy || l[volume.LabelPartOf] != "pvnfs" {
			t.Errorf("%s: labels %v annotations %v", o.GetName(), l, a)
		}
	}
	if got, err := d.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: name}); err != nil ||
		got.Status.VolumeCondition.Abnormal {
		t.Errorf("ControllerGetVolume = %v, %v", got, err)
	}

	if _, err := d.DeleteVolume(callCtx(t, time.Minute), &csi.DeleteVolumeRequest{VolumeId: name}); err != nil {
		t.Fatalf("DeleteVolume: %v", err)
	}
	counts := d.objectCounts(t, name)
	for kind, n := range counts {
		if n != 0 {
			t.Errorf("after DeleteVolume, %d %s(s) of the volume are left", n, kind)
		}
	}
	// Idempotent: deleting again, or deleting IDs pvnfs never made, is OK.
	for _, id := range []string{name, "never-created", "Not A Valid ID!"} {
		if _, err := d.DeleteVolume(callCtx(t, 30*time.Second), &csi.DeleteVolumeRequest{VolumeId: id}); err != nil {
			t.Errorf("DeleteVolume(%q) again: %v", id, err)
		}
	}
	if _, err := d.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: name}); status.Code(err) != codes.NotFound {
		t.Errorf("ControllerGetVolume after delete: %v", err)
	}
}

// checkDeployment asserts the server Deployment's spec field by field.
func checkDeployment(t *testing.T, dep *appsv1.Deployment, id string) {
	t.Helper()
	if *dep.Spec.Replicas != 1 || dep.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("replicas %d strategy %s", *dep.Spec.Replicas, dep.Spec.Strategy.Type)
	}
	pod := dep.Spec.Template.Spec
	c := pod.Containers[0]
	if c.Image != testImage || c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("container image %s probes %+v %+v", c.Image, c.ReadinessProbe, c.LivenessProbe)
	}
	args := strings.Join(c.Args, " ")
	for _, want := range []string{"--volume-id=" + id, "--engine=kernel", "--export-sync=true", "--root-squash=false",
		"--export-owner=33:33", "--export-mode=2775", fmt.Sprintf("--%s=%d", serverconfig.FlagThreads, parameters.DefaultNFSThreads)} {
		if !strings.Contains(args, want) {
			t.Errorf("server args %q lack %q", args, want)
		}
	}
	if pod.Volumes[0].PersistentVolumeClaim.ClaimName != "pvnfs-"+id || c.VolumeMounts[0].MountPath != volume.VolumeRoot {
		t.Errorf("backend volume %+v mounted at %s", pod.Volumes[0], c.VolumeMounts[0].MountPath)
	}
	if c.SecurityContext == nil || c.SecurityContext.Privileged == nil || !*c.SecurityContext.Privileged {
		t.Errorf("kernel engine container is not privileged: %+v", c.SecurityContext)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %+v", c.Resources)
	}
	var user, notReady, unreachable bool
	for _, tol := range pod.Tolerations {
		switch {
		case tol.Key == "dedicated" && tol.Value == "storage":
			user = true
		case tol.Key == corev1.TaintNodeNotReady && tol.Effect == corev1.TaintEffectNoExecute && *tol.TolerationSeconds == 15:
			notReady = true
		case tol.Key == corev1.TaintNodeUnreachable && tol.Effect == corev1.TaintEffectNoExecute && *tol.TolerationSeconds == 15:
			unreachable = true
		}
	}
	if !user || !notReady || !unreachable {
		t.Errorf("tolerations %+v", pod.Tolerations)
	}
	if *pod.AutomountServiceAccountToken || *pod.EnableServiceLinks {
		t.Error("server pod mounts a token or gets service links")
	}
}

// TestControlPlaneConcurrentCreateVolume: 50 concurrent calls over 10 names, each
// retried as the provisioner would on a retryable code, end with exactly 10 sets.
func TestControlPlaneConcurrentCreateVolume(t *testing.T) {
	d := startDriver(t)
	const names, calls = 10, 50
	var wg sync.WaitGroup
	var mu sync.Mutex
	results := map[string]map[string]string{} // name -> ClusterIP per call
	codesSeen := map[codes.Code]int{}
	for i := 0; i < calls; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			name := fmt.Sprintf("concurrent-%d", i%names)
			// Retry as the provisioner does, until a deadline, not a count: how many
			// Aborted answers a call meets depends on the machine's speed.
			deadline := time.Now().Add(2 * time.Minute)
			for {
				resp, err := d.CreateVolume(callCtx(t, time.Minute), createReq(name, nil))
				mu.Lock()
				codesSeen[status.Code(err)]++
				mu.Unlock()
				if err == nil {
					mu.Lock()
					if results[name] == nil {
						results[name] = map[string]string{}
					}
					results[name][fmt.Sprint(i)] = resp.Volume.VolumeContext[volume.ContextServer]
					mu.Unlock()
					return
				}
				if !csiserverRetryable(err) || time.Now().After(deadline) {
					t.Errorf("CreateVolume(%s): %v", name, err)
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
		}(i)
	}
	wg.Wait()
	t.Logf("codes seen across %d calls and their retries: %v", calls, codesSeen)
	if len(results) != names {
		t.Fatalf("%d names succeeded, want %d", len(results), names)
	}
	for name, ips := range results {
		seen := map[string]bool{}
		for _, ip := range ips {
			seen[ip] = true
		}
		if len(seen) != 1 {
			t.Errorf("%s: calls returned different servers %v", name, ips)
		}
		id, _ := volume.IDFromName(name)
		for kind, n := range d.objectCounts(t, id) {
			want := 1
			if n != want && kind != "endpointslice" {
				t.Errorf("%s: %d %s(s), want exactly %d", name, n, kind, want)
			}
		}
	}
	all, _ := d.cluster.Client.CoreV1().Services(d.ns).List(callCtx(t, 30*time.Second), metav1.ListOptions{})
	if len(all.Items) != names {
		t.Errorf("%d Services in the namespace, want %d", len(all.Items), names)
	}
}

func csiserverRetryable(err error) bool {
	switch status.Code(err) {
	case codes.Aborted, codes.DeadlineExceeded, codes.Unavailable:
		return true
	}
	return false
}

// TestControlPlaneCreateVolumeConvergesAfterCrash kills the controller after each step
// of CreateVolume (Service, backend PVC, Deployment) and checks that the next call,
// by a fresh controller, completes the same volume without duplicates.
func TestControlPlaneCreateVolumeConvergesAfterCrash(t *testing.T) {
	d := startDriver(t)
	steps := []string{"service", "pvc", "deployment"}
	for crashAfter := range steps {
		t.Run("after "+steps[crashAfter], func(t *testing.T) {
			name := fmt.Sprintf("crash-after-%s", steps[crashAfter])
			v, err := validateCreate(createReq(name, nil))
			if err != nil {
				t.Fatal(err)
			}
			ctx := callCtx(t, time.Minute)
			// The controller that crashes did steps 0..crashAfter and then died.
			for i := 0; i <= crashAfter; i++ {
				var err error
				switch steps[i] {
				case "service":
					err = d.svc.ensureService(ctx, &v)
				case "pvc":
					err = d.svc.ensurePVC(ctx, v)
				case "deployment":
					err = d.svc.ensureDeployment(ctx, v)
				}
				if err != nil {
					t.Fatalf("step %s: %v", steps[i], err)
				}
			}
			d.restart(t)
			resp, err := d.CreateVolume(ctx, createReq(name, nil))
			if err != nil {
				t.Fatalf("CreateVolume after a crash after %s: %v", steps[crashAfter], err)
			}
			if resp.Volume.VolumeContext[volume.ContextServer] != v.clusterIP {
				t.Errorf("server %s, the crashed attempt allocated %s", resp.Volume.VolumeContext[volume.ContextServer], v.clusterIP)
			}
			for kind, n := range d.objectCounts(t, name) {
				if n != 1 {
					t.Errorf("%d %s(s) after convergence, want 1", n, kind)
				}
			}
		})
	}
}

func TestControlPlaneCreateVolumeRefusesConflicts(t *testing.T) {
	d := startDriver(t)
	name := "conflicts"
	if _, err := d.CreateVolume(callCtx(t, time.Minute), createReq(name, map[string]string{parameters.NFSThreads: "8"})); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		req  *csi.CreateVolumeRequest
		want codes.Code
	}{
		{name: "same request again", req: createReq(name, map[string]string{parameters.NFSThreads: "8"}), want: codes.OK},
		{name: "other parameters", req: createReq(name, map[string]string{parameters.NFSThreads: "16"}), want: codes.AlreadyExists},
		{name: "larger size", req: func() *csi.CreateVolumeRequest {
			r := createReq(name, map[string]string{parameters.NFSThreads: "8"})
			r.CapacityRange.RequiredBytes = 2 * testGiB
			return r
		}(), want: codes.AlreadyExists},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := d.CreateVolume(callCtx(t, time.Minute), tc.req)
			if status.Code(err) != tc.want {
				t.Errorf("CreateVolume = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestControlPlaneBadInputLeavesNothing: every malformed request is refused with
// InvalidArgument naming what is wrong, and creates no object.
func TestControlPlaneBadInputLeavesNothing(t *testing.T) {
	d := startDriver(t)
	block := createReq("bad-block", nil)
	block.VolumeCapabilities[0].AccessType = &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}}
	tests := []struct {
		name     string
		req      *csi.CreateVolumeRequest
		wantMsg  string
		wantCode codes.Code // InvalidArgument when unset
	}{
		{name: "unknown parameter", req: createReq("bad-param", map[string]string{"nfsversion": "4.1"}), wantMsg: `parameter "nfsversion": unknown parameter; accepted parameters are backendAccessMode, backendStorageClass,`},
		{name: "invalid value", req: createReq("bad-value", map[string]string{parameters.LeaseSeconds: "1"}), wantMsg: `"leaseSeconds"`},
		{name: "block", req: block, wantMsg: "NFS filesystems"},
		{name: "missing backend class", req: createReq("bad-class", map[string]string{parameters.BackendStorageClass: "does-not-exist"}), wantMsg: `StorageClass "does-not-exist" does not exist`},
		{name: "no capabilities", req: &csi.CreateVolumeRequest{Name: "bad-caps"}, wantMsg: "volume_capabilities"},
		{name: "no name", req: createReq("", nil), wantMsg: "name is required"},
		{name: "required above limit", req: &csi.CreateVolumeRequest{Name: "bad-range", CapacityRange: &csi.CapacityRange{RequiredBytes: 2, LimitBytes: 1},
			VolumeCapabilities: createReq("x", nil).VolumeCapabilities}, wantMsg: "exceeds limit_bytes", wantCode: codes.OutOfRange},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.wantCode
			if want == codes.OK {
				want = codes.InvalidArgument
			}
			_, err := d.CreateVolume(callCtx(t, 30*time.Second), tc.req)
			if status.Code(err) != want || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("CreateVolume = %v, want %v saying %q", err, want, tc.wantMsg)
			}
		})
	}
	ctx := callCtx(t, 30*time.Second)
	k := d.cluster.Client
	pvcs, _ := k.CoreV1().PersistentVolumeClaims(d.ns).List(ctx, metav1.ListOptions{})
	deps, _ := k.AppsV1().Deployments(d.ns).List(ctx, metav1.ListOptions{})
	svcs, _ := k.CoreV1().Services(d.ns).List(ctx, metav1.ListOptions{})
	if n := len(pvcs.Items) + len(deps.Items) + len(svcs.Items); n != 0 {
		t.Errorf("refused requests left %d objects behind", n)
	}
}

func TestControlPlaneExpandVolume(t *testing.T) {
	d := startDriver(t)
	for _, tc := range []struct {
		class    string
		wantCode codes.Code
	}{{backendClass, codes.OK}, {fixedClass, codes.FailedPrecondition}} {
		t.Run(tc.class, func(t *testing.T) {
			name := "expand-" + tc.class
			if _, err := d.CreateVolume(callCtx(t, time.Minute), createReq(name, map[string]string{parameters.BackendStorageClass: tc.class})); err != nil {
				t.Fatal(err)
			}
			resp, err := d.ControllerExpandVolume(callCtx(t, time.Minute), &csi.ControllerExpandVolumeRequest{
				VolumeId: name, CapacityRange: &csi.CapacityRange{RequiredBytes: 3 * testGiB}})
			if status.Code(err) != tc.wantCode {
				t.Fatalf("ControllerExpandVolume = %v, want %v", err, tc.wantCode)
			}
			pvc, _ := d.cluster.Client.CoreV1().PersistentVolumeClaims(d.ns).Get(callCtx(t, 10*time.Second), "pvnfs-"+name, metav1.GetOptions{})
			got := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
			if tc.wantCode != codes.OK {
				if !strings.Contains(err.Error(), "allowVolumeExpansion") || got.Value() != testGiB {
					t.Errorf("error %v, backend request now %s", err, got.String())
				}
				return
			}
			if resp.CapacityBytes != 3*testGiB || resp.NodeExpansionRequired || got.Value() != 3*testGiB {
				t.Errorf("response %v, backend request %s", resp, got.String())
			}
			// Asking for less than the volume has is a no-op that reports the size.
			resp, err = d.ControllerExpandVolume(callCtx(t, time.Minute), &csi.ControllerExpandVolumeRequest{
				VolumeId: name, CapacityRange: &csi.CapacityRange{RequiredBytes: 2 * testGiB}})
			if err != nil || resp.CapacityBytes != 3*testGiB {
				t.Errorf("shrink request = %v, %v", resp, err)
			}
		})
	}
	if _, err := d.ControllerExpandVolume(callCtx(t, 10*time.Second), &csi.ControllerExpandVolumeRequest{
		VolumeId: "no-such-volume", CapacityRange: &csi.CapacityRange{RequiredBytes: testGiB}}); status.Code(err) != codes.NotFound {
		t.Errorf("expanding an unknown volume: %v", err)
	}
	if _, err := d.ControllerExpandVolume(callCtx(t, 10*time.Second), &csi.ControllerExpandVolumeRequest{
		VolumeId: "expand-" + backendClass, CapacityRange: &csi.CapacityRange{RequiredBytes: 2, LimitBytes: 1}}); status.Code(err) != codes.OutOfRange {
		t.Errorf("expanding to required above limit = %v, want OutOfRange", err)
	}

	// A backend that accepts the larger request but never grows: no success, a
	// retryable code, and the backend's own cause in the message (csi-resizer
	// records it as an event on the user's claim).
	name := "expand-" + fullClass
	if _, err := d.CreateVolume(callCtx(t, time.Minute), createReq(name, map[string]string{parameters.BackendStorageClass: fullClass})); err != nil {
		t.Fatal(err)
	}
	_, err := d.ControllerExpandVolume(callCtx(t, 10*time.Second), &csi.ControllerExpandVolumeRequest{
		VolumeId: name, CapacityRange: &csi.CapacityRange{RequiredBytes: 3 * testGiB}})
	if status.Code(err) != codes.DeadlineExceeded || !strings.Contains(err.Error(), localcluster.ResizeFailedMessage) ||
		!strings.Contains(err.Error(), "holds 1Gi of the 3Gi requested") {
		t.Errorf("expanding on a backend that cannot grow = %v, want DeadlineExceeded with the sizes and the backend's event %q", err, localcluster.ResizeFailedMessage)
	}
}

// TestControlPlaneConditions: a server that never turns Ready and a backend claim
// that never binds make CreateVolume return a retryable code whose message says why,
// and ControllerGetVolume/ListVolumes report the volume abnormal.
func TestControlPlaneConditions(t *testing.T) {
	d := startDriver(t)
	tests := []struct {
		name    string
		params  map[string]string
		wantMsg []string
	}{
		{name: "server never ready", params: map[string]string{parameters.ServerNodeSelector: "kubernetes.io/hostname=" + localcluster.HoldNode,
			parameters.ServerTolerations: fmt.Sprintf(`[{"key":%q,"operator":"Exists"}]`, localcluster.HoldTaint)},
			wantMsg: []string{"server pod", "on node " + localcluster.HoldNode, "not Ready"}},
		{name: "server unschedulable", params: map[string]string{parameters.ServerNodeSelector: "pool=none"},
			wantMsg: []string{"not scheduled", "didn't match Pod's node affinity/selector"}},
		{name: "backend never binds", params: map[string]string{parameters.BackendStorageClass: brokenClass},
			wantMsg: []string{"backend PVC", "Pending", "ProvisioningFailed", "backend storage is unavailable"}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name := fmt.Sprintf("condition-%d", i)
			_, err := d.CreateVolume(callCtx(t, 8*time.Second), createReq(name, tc.params))
			if status.Code(err) != codes.DeadlineExceeded || !strings.Contains(err.Error(), "not ready yet") {
				t.Fatalf("CreateVolume = %v, want DeadlineExceeded saying what is not ready", err)
			}
			// The explanation follows the cluster's own progress (scheduling, the
			// backend provisioner's events): wait until it carries every detail, as
			// a user reading later retries' events would see it.
			var last string
			if err := wait.PollUntilContextTimeout(callCtx(t, time.Minute), 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
				got, err := d.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: name})
				if err != nil {
					return false, err
				}
				if !got.Status.VolumeCondition.Abnormal {
					return false, fmt.Errorf("volume reported normal")
				}
				last = got.Status.VolumeCondition.Message
				for _, w := range tc.wantMsg {
					if !strings.Contains(last, w) {
						return false, nil
					}
				}
				return true, nil
			}); err != nil {
				t.Errorf("volume condition %q never said all of %q: %v", last, tc.wantMsg, err)
			}
			// A retried CreateVolume says the same.
			_, err = d.CreateVolume(callCtx(t, 5*time.Second), createReq(name, tc.params))
			if !strings.Contains(fmt.Sprint(err), tc.wantMsg[len(tc.wantMsg)-1]) {
				t.Errorf("retried CreateVolume = %v, want it to say %q", err, tc.wantMsg[len(tc.wantMsg)-1])
			}
		})
	}
	list, err := d.ListVolumes(callCtx(t, 10*time.Second), &csi.ListVolumesRequest{})
	if err != nil || len(list.Entries) != len(tests) {
		t.Fatalf("ListVolumes = %v, %v", list, err)
	}
	for _, e := range list.Entries {
		if !e.Status.VolumeCondition.Abnormal {
			t.Errorf("%s listed as normal", e.Volume.VolumeId)
		}
	}
	// The volumes can still be deleted while they are broken.
	for i := range tests {
		if _, err := d.DeleteVolume(callCtx(t, time.Minute), &csi.DeleteVolumeRequest{VolumeId: fmt.Sprintf("condition-%d", i)}); err != nil {
			t.Errorf("DeleteVolume: %v", err)
		}
	}
}

func TestControlPlaneListVolumesPaginates(t *testing.T) {
	d := startDriver(t)
	var want []string
	for i := 0; i < 5; i++ {
		name := fmt.Sprintf("list-%d", i)
		want = append(want, name)
		if _, err := d.CreateVolume(callCtx(t, time.Minute), createReq(name, nil)); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	token := ""
	for pages := 0; ; pages++ {
		resp, err := d.ListVolumes(callCtx(t, 10*time.Second), &csi.ListVolumesRequest{MaxEntries: 2, StartingToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range resp.Entries {
			got = append(got, e.Volume.VolumeId)
			if e.Volume.VolumeContext[volume.ContextServer] == "" || e.Volume.CapacityBytes != testGiB {
				t.Errorf("entry %v", e.Volume)
			}
		}
		if resp.NextToken == "" {
			break
		}
		token = resp.NextToken
		if pages > 5 {
			t.Fatal("ListVolumes never ends")
		}
	}
	sort.Strings(got)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("listed %v, want %v", got, want)
	}
	if _, err := d.ListVolumes(callCtx(t, 10*time.Second), &csi.ListVolumesRequest{StartingToken: "Not/A/Token"}); status.Code(err) != codes.Aborted {
		t.Errorf("bad token: %v", err)
	}
}

// TestControlPlaneAPICostOfProvisioning counts the requests the controller sends to
// the API server for one provisioning and one deletion: reads come from informers,
// so only the writes remain.
func TestControlPlaneAPICostOfProvisioning(t *testing.T) {
	d := startDriver(t)
	before := d.writes()
	if _, err := d.CreateVolume(callCtx(t, time.Minute), createReq("api-cost", nil)); err != nil {
		t.Fatal(err)
	}
	created := diff(d.writes(), before)
	t.Logf("API requests for one CreateVolume: %s", joinKeys(created))
	want := map[string]float64{"POST services": 1, "POST persistentvolumeclaims": 1, "POST deployments": 1}
	if fmt.Sprint(created) != fmt.Sprint(want) {
		t.Errorf("CreateVolume sent %v, want exactly %v", created, want)
	}
	before = d.writes()
	if _, err := d.DeleteVolume(callCtx(t, time.Minute), &csi.DeleteVolumeRequest{VolumeId: "api-cost"}); err != nil {
		t.Fatal(err)
	}
	deleted := diff(d.writes(), before)
	t.Logf("API requests for one DeleteVolume: %s", joinKeys(deleted))
	want = map[string]float64{"DELETE services": 1, "DELETE persistentvolumeclaims": 1, "DELETE deployments": 1}
	if fmt.Sprint(deleted) != fmt.Sprint(want) {
		t.Errorf("DeleteVolume sent %v, want exactly %v", deleted, want)
	}
}

func diff(after, before map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range after {
		if d := v - before[k]; d > 0 {
			out[k] = d
		}
	}
	return out
}

// TestControlPlaneDeleteVolumeWhileAnotherPVUsesIt: a volume shared with a second
// namespace through a static PersistentVolume on the same handle is not deleted
// when its first PersistentVolume is released: DeleteVolume answers
// FailedPrecondition naming the other one, and deletes the volume once that one
// is gone. A released PersistentVolume (the one being deleted) does not count.
func TestControlPlaneDeleteVolumeWhileAnotherPVUsesIt(t *testing.T) {
	d := startDriver(t)
	k := d.cluster.Client
	ctx := callCtx(t, 3*controlPlaneWait)
	// PersistentVolumes are cluster-wide: the name is unique across the tests'
	// namespaces.
	resp, err := d.CreateVolume(ctx, createReq("shared-"+d.ns, nil))
	if err != nil {
		t.Fatal(err)
	}
	id := resp.GetVolume().GetVolumeId()
	pv := func(name string, claim *corev1.ObjectReference) *corev1.PersistentVolume {
		return &corev1.PersistentVolume{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.PersistentVolumeSpec{
				Capacity:                      corev1.ResourceList{corev1.ResourceStorage: *resourceGiB()},
				AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
				PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
				ClaimRef:                      claim,
				PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
					Driver: "nfs.pvnfs.io", VolumeHandle: id, VolumeAttributes: resp.GetVolume().GetVolumeContext()}},
			},
		}
	}
	// The provisioned PersistentVolume, released: its claim is gone.
	released := pv(id+"-released", &corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1",
		Namespace: d.ns, Name: "deleted-claim", UID: "00000000-0000-0000-0000-000000000001"})
	// The second namespace's static PersistentVolume, waiting for its claim.
	static := pv(id+"-static", nil)
	for _, p := range []*corev1.PersistentVolume{released, static} {
		if _, err := k.CoreV1().PersistentVolumes().Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = k.CoreV1().PersistentVolumes().Delete(context.Background(), p.Name, metav1.DeleteOptions{})
		})
	}
	waitPVPhase(t, ctx, d, released.Name, corev1.VolumeReleased)
	waitPVPhase(t, ctx, d, static.Name, corev1.VolumeAvailable)

	_, err = d.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), static.Name) {
		t.Fatalf("DeleteVolume while %s uses the volume = %v, want FailedPrecondition naming it", static.Name, err)
	}
	if n := d.objectCounts(t, id)["deployment"]; n != 1 {
		t.Errorf("the refused DeleteVolume left %d Deployments, want the server kept", n)
	}

	if err := k.CoreV1().PersistentVolumes().Delete(ctx, static.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// The controller learns of the deletion through its watch: the provisioner's
	// retries see FailedPrecondition until then.
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, controlPlaneWait, true, func(ctx context.Context) (bool, error) {
		_, err := d.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id})
		if status.Code(err) == codes.FailedPrecondition {
			return false, nil
		}
		return true, err
	})
	if err != nil {
		t.Fatalf("DeleteVolume after the other PersistentVolume is gone: %v", err)
	}
	waitGone(t, d, id)
}

// waitPVPhase waits until the PersistentVolume controller has given the volume
// that phase, and the driver's cache has seen it.
func waitPVPhase(t *testing.T, ctx context.Context, d *testDriver, name string, phase corev1.PersistentVolumePhase) {
	t.Helper()
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, controlPlaneWait, true, func(ctx context.Context) (bool, error) {
		objs := d.svc.cache.pvs.List()
		for _, o := range objs {
			if pv := o.(*corev1.PersistentVolume); pv.Name == name {
				return pv.Status.Phase == phase, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("PersistentVolume %s never reached phase %s: %v", name, phase, err)
	}
}

// TestControlPlaneModifyVolume: a VolumeAttributesClass's parameters change a live
// volume's server settings with one roll of its server, answered once the new
// server is Ready; the same call again rolls nothing; a fixed parameter is refused
// naming it, and changes nothing.
func TestControlPlaneModifyVolume(t *testing.T) {
	d := startDriver(t)
	k := d.cluster.Client
	ctx := callCtx(t, 3*controlPlaneWait)
	const name = "modify"
	if _, err := d.CreateVolume(ctx, createReq(name, map[string]string{parameters.NFSThreads: "8"})); err != nil {
		t.Fatal(err)
	}
	obj := volume.ObjectName(name)
	before, err := k.AppsV1().Deployments(d.ns).Get(ctx, obj, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	modify := func(m map[string]string) error {
		_, err := d.ControllerModifyVolume(ctx, &csi.ControllerModifyVolumeRequest{VolumeId: name, MutableParameters: m})
		return err
	}
	start := time.Now()
	if err := modify(map[string]string{parameters.NFSThreads: "32", parameters.ServerMemoryLimit: "2Gi"}); err != nil {
		t.Fatalf("ControllerModifyVolume: %v", err)
	}
	t.Logf("modified and rolled in %s", time.Since(start).Round(time.Millisecond))
	after, err := k.AppsV1().Deployments(d.ns).Get(ctx, obj, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := after.Spec.Template.Spec.Containers[0]
	if !slices.Contains(c.Args, "--"+serverconfig.FlagThreads+"=32") || c.Resources.Limits.Memory().String() != "2Gi" {
		t.Errorf("server after the change: args %v, memory limit %s; want 32 threads and 2Gi", c.Args, c.Resources.Limits.Memory())
	}
	if after.Generation != before.Generation+1 || !rollComplete(after) {
		t.Errorf("generation %d -> %d, complete %v: want exactly one roll, complete", before.Generation, after.Generation, rollComplete(after))
	}
	pvc, err := k.CoreV1().PersistentVolumeClaims(d.ns).Get(ctx, obj, metav1.GetOptions{})
	if err != nil || pvc.Annotations[volume.AnnotationMutableParameters] != `{"nfsThreads":"32","serverMemoryLimit":"2Gi"}` {
		t.Errorf("backend PVC records %q (%v)", pvc.Annotations[volume.AnnotationMutableParameters], err)
	}

	// The same class again (csi-resizer's retry): nothing rolls.
	if err := modify(map[string]string{parameters.NFSThreads: "32"}); err != nil {
		t.Errorf("repeated ControllerModifyVolume: %v", err)
	}
	// A fixed parameter: refused, naming it.
	err = modify(map[string]string{parameters.ServerEngine: parameters.EngineGanesha, parameters.NFSThreads: "4"})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), `"serverEngine": cannot change on an existing volume`) {
		t.Errorf("changing the engine = %v, want InvalidArgument naming serverEngine", err)
	}
	// A value the volume's other parameters refuse (grace below the lease).
	err = modify(map[string]string{parameters.LeaseSeconds: "120", parameters.GraceSeconds: "60"})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), parameters.GraceSeconds) {
		t.Errorf("grace below lease = %v, want InvalidArgument naming graceSeconds", err)
	}
	last, err := k.AppsV1().Deployments(d.ns).Get(ctx, obj, metav1.GetOptions{})
	if err != nil || last.Generation != after.Generation {
		t.Errorf("refused or repeated changes rolled the server: generation %d -> %d (%v)", after.Generation, last.Generation, err)
	}
	if _, err := d.ControllerModifyVolume(ctx, &csi.ControllerModifyVolumeRequest{VolumeId: "no-such-volume", MutableParameters: map[string]string{parameters.NFSThreads: "4"}}); status.Code(err) != codes.NotFound {
		t.Errorf("modifying an unknown volume = %v, want NotFound", err)
	}
}
