package node

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pvnfs/pvnfs/pkg/csiserver"
	"github.com/pvnfs/pvnfs/pkg/mounter"
)

const (
	testVolume = "pvc-0f3c5e1a-7d2b-4b8e-9a61-2f4c8d9e0b1a"
	testServer = "10.96.0.10"
	testSource = testServer + ":/data/export"
)

var (
	testContext  = map[string]string{"server": testServer, "share": "/data/export"}
	otherContext = map[string]string{"server": "10.96.0.99", "share": "/data/export"}
)

func capability(mode csi.VolumeCapability_AccessMode_Mode, flags ...string) *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{MountFlags: flags}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode},
	}
}

var rwx = capability(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)

// env is a node service over a Fake mounter, with kubelet-like paths in a temp dir.
type env struct {
	svc     *Service
	fake    *mounter.Fake
	staging string
	dir     string
}

func newEnv(t *testing.T, tweak ...func(*Config)) *env {
	t.Helper()
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(testVolume))
	staging := filepath.Join(dir, "plugins/kubernetes.io/csi/nfs.pvnfs.io", hex.EncodeToString(sum[:]), "globalmount")
	if err := os.MkdirAll(staging, 0o750); err != nil {
		t.Fatal(err)
	}
	f := &mounter.Fake{}
	cfg := Config{
		NodeID: "node-a", DriverName: "nfs.pvnfs.io", Mounter: f,
		MountTimeout: 5 * time.Second, UnmountTimeout: 200 * time.Millisecond, StatTimeout: 200 * time.Millisecond,
	}
	for _, fn := range tweak {
		fn(&cfg)
	}
	svc, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &env{svc: svc, fake: f, staging: staging, dir: dir}
}

func (e *env) target(pod string) string {
	return filepath.Join(e.dir, "pods", pod, "volumes/kubernetes.io~csi/pv-1/mount")
}

func (e *env) stageReq() *csi.NodeStageVolumeRequest {
	return &csi.NodeStageVolumeRequest{VolumeId: testVolume, StagingTargetPath: e.staging, VolumeCapability: rwx, VolumeContext: testContext}
}

func (e *env) publishReq(pod string, readOnly bool) *csi.NodePublishVolumeRequest {
	return &csi.NodePublishVolumeRequest{VolumeId: testVolume, StagingTargetPath: e.staging, TargetPath: e.target(pod),
		VolumeCapability: rwx, VolumeContext: testContext, Readonly: readOnly}
}

func (e *env) stage(t *testing.T) {
	t.Helper()
	if _, err := e.svc.NodeStageVolume(context.Background(), e.stageReq()); err != nil {
		t.Fatalf("NodeStageVolume: %v", err)
	}
}

func (e *env) publish(t *testing.T, pod string, readOnly bool) {
	t.Helper()
	if _, err := e.svc.NodePublishVolume(context.Background(), e.publishReq(pod, readOnly)); err != nil {
		t.Fatalf("NodePublishVolume(%s): %v", pod, err)
	}
}

// code is the gRPC code the CO sees: handlers' plain errors go through
// csiserver.ToStatus, as in the real server.
func code(err error) codes.Code { return status.Code(csiserver.ToStatus(err)) }

func count(calls []string, prefix string) int {
	n := 0
	for _, c := range calls {
		if strings.HasPrefix(c, prefix) {
			n++
		}
	}
	return n
}

func TestNodeGetInfoAndCapabilities(t *testing.T) {
	e := newEnv(t)
	info, err := e.svc.NodeGetInfo(context.Background(), &csi.NodeGetInfoRequest{})
	if err != nil || info.GetNodeId() != "node-a" || info.GetAccessibleTopology() != nil || info.GetMaxVolumesPerNode() != 0 {
		t.Errorf("NodeGetInfo = %v, %v; want node-a, no topology, no limit", info, err)
	}
	caps, err := e.svc.NodeGetCapabilities(context.Background(), &csi.NodeGetCapabilitiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var got []csi.NodeServiceCapability_RPC_Type
	for _, c := range caps.GetCapabilities() {
		got = append(got, c.GetRpc().GetType())
	}
	want := []csi.NodeServiceCapability_RPC_Type{
		csi.NodeServiceCapability_RPC_STAGE_UNSTAGE_VOLUME, csi.NodeServiceCapability_RPC_GET_VOLUME_STATS,
		csi.NodeServiceCapability_RPC_VOLUME_CONDITION, csi.NodeServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER,
	}
	if !slices.Equal(got, want) {
		t.Errorf("capabilities = %v, want %v", got, want)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	if _, err := New(Config{}); err == nil || !strings.Contains(err.Error(), "node ID") || !strings.Contains(err.Error(), "mount timeout") {
		t.Errorf("New(empty config) = %v, want every problem named", err)
	}
}

// TestErrorCodes is the list of CSI outcomes of the node service.
func TestErrorCodes(t *testing.T) {
	block := &csi.VolumeCapability{AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER}}
	ext4 := capability(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)
	ext4.GetMount().FsType = "ext4"
	noMode := &csi.VolumeCapability{AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}}}
	rox := capability(csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY)
	rwop := capability(csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER)
	ctx := context.Background()

	tests := []struct {
		name  string
		setup func(t *testing.T, e *env)
		call  func(e *env) error
		want  codes.Code
	}{
		// NodeStageVolume
		{name: "stage: ok", call: func(e *env) error { _, err := e.svc.NodeStageVolume(ctx, e.stageReq()); return err }, want: codes.OK},
		{name: "stage: no volume_id", want: codes.InvalidArgument, call: func(e *env) error {
			r := e.stageReq()
			r.VolumeId = ""
			_, err := e.svc.NodeStageVolume(ctx, r)
			return err
		}},
		{name: "stage: no staging path", want: codes.InvalidArgument, call: func(e *env) error {
			r := e.stageReq()
			r.StagingTargetPath = ""
			_, err := e.svc.NodeStageVolume(ctx, r)
			return err
		}},
		{name: "stage: relative staging path", want: codes.InvalidArgument, call: func(e *env) error {
			r := e.stageReq()
			r.StagingTargetPath = "some/path"
			_, err := e.svc.NodeStageVolume(ctx, r)
			return err
		}},
		{name: "stage: no capability", want: codes.InvalidArgument, call: func(e *env) error {
			r := e.stageReq()
			r.VolumeCapability = nil
			_, err := e.svc.NodeStageVolume(ctx, r)
			return err
		}},
		{name: "stage: block access type", want: codes.InvalidArgument, call: func(e *env) error {
			r := e.stageReq()
			r.VolumeCapability = block
			_, err := e.svc.NodeStageVolume(ctx, r)
			return err
		}},
		{name: "stage: fs_type ext4", want: codes.InvalidArgument, call: func(e *env) error {
			r := e.stageReq()
			r.VolumeCapability = ext4
			_, err := e.svc.NodeStageVolume(ctx, r)
			return err
		}},
		{name: "stage: no access mode", want: codes.InvalidArgument, call: func(e *env) error {
			r := e.stageReq()
			r.VolumeCapability = noMode
			_, err := e.svc.NodeStageVolume(ctx, r)
			return err
		}},
		{name: "stage: no volume context", want: codes.InvalidArgument, call: func(e *env) error {
			r := e.stageReq()
			r.VolumeContext = nil
			_, err := e.svc.NodeStageVolume(ctx, r)
			return err
		}},
		{name: "stage: server is a DNS name", want: codes.InvalidArgument, call: func(e *env) error {
			r := e.stageReq()
			r.VolumeContext = map[string]string{"server": "nfs.svc.cluster.local", "share": "/data/export"}
			_, err := e.svc.NodeStageVolume(ctx, r)
			return err
		}},
		{name: "stage: NFSv3 in mountOptions", want: codes.InvalidArgument, call: func(e *env) error {
			r := e.stageReq()
			r.VolumeCapability = capability(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER, "nfsvers=3")
			_, err := e.svc.NodeStageVolume(ctx, r)
			return err
		}},
		{name: "stage: staging path holds another volume", want: codes.AlreadyExists,
			setup: func(t *testing.T, e *env) {
				e.fake.Add(mounter.MountPoint{Path: e.staging, Root: "/", Device: "0:60", FSType: "nfs4", Source: "10.96.0.99:/data/export"})
			},
			call: func(e *env) error { _, err := e.svc.NodeStageVolume(ctx, e.stageReq()); return err }},
		{name: "stage: staged read-write, asked reader-only", want: codes.AlreadyExists,
			setup: func(t *testing.T, e *env) { e.stage(t) },
			call: func(e *env) error {
				r := e.stageReq()
				r.VolumeCapability = rox
				_, err := e.svc.NodeStageVolume(ctx, r)
				return err
			}},
		{name: "stage: mount helper killed at the deadline", want: codes.DeadlineExceeded,
			setup: func(t *testing.T, e *env) {
				e.fake.MountHook = func(ctx context.Context, _, _ string, _ []string) error {
					<-ctx.Done()
					return &mounter.HelperError{Command: "mount", Killed: true, ExitCode: -1, Err: ctx.Err()}
				}
				e.svc.cfg.MountTimeout = 50 * time.Millisecond
			},
			call: func(e *env) error { _, err := e.svc.NodeStageVolume(ctx, e.stageReq()); return err }},
		{name: "stage: server refuses the mount", want: codes.Internal,
			setup: func(t *testing.T, e *env) {
				e.fake.MountHook = func(context.Context, string, string, []string) error {
					return &mounter.HelperError{Command: "mount", ExitCode: 32, Output: "mount.nfs: access denied by server"}
				}
			},
			call: func(e *env) error { _, err := e.svc.NodeStageVolume(ctx, e.stageReq()); return err }},

		// NodePublishVolume
		{name: "publish: ok", setup: func(t *testing.T, e *env) { e.stage(t) },
			call: func(e *env) error { _, err := e.svc.NodePublishVolume(ctx, e.publishReq("p1", false)); return err }, want: codes.OK},
		{name: "publish: no volume_id", want: codes.InvalidArgument, call: func(e *env) error {
			r := e.publishReq("p1", false)
			r.VolumeId = ""
			_, err := e.svc.NodePublishVolume(ctx, r)
			return err
		}},
		{name: "publish: no target path", want: codes.InvalidArgument, call: func(e *env) error {
			r := e.publishReq("p1", false)
			r.TargetPath = ""
			_, err := e.svc.NodePublishVolume(ctx, r)
			return err
		}},
		{name: "publish: no capability", want: codes.InvalidArgument, call: func(e *env) error {
			r := e.publishReq("p1", false)
			r.VolumeCapability = nil
			_, err := e.svc.NodePublishVolume(ctx, r)
			return err
		}},
		{name: "publish: block access type", want: codes.InvalidArgument, call: func(e *env) error {
			r := e.publishReq("p1", false)
			r.VolumeCapability = block
			_, err := e.svc.NodePublishVolume(ctx, r)
			return err
		}},
		{name: "publish: no staging path", want: codes.InvalidArgument, call: func(e *env) error {
			r := e.publishReq("p1", false)
			r.StagingTargetPath = ""
			_, err := e.svc.NodePublishVolume(ctx, r)
			return err
		}},
		{name: "publish: bad volume context", want: codes.InvalidArgument, call: func(e *env) error {
			r := e.publishReq("p1", false)
			r.VolumeContext = map[string]string{"server": testServer, "share": "relative"}
			_, err := e.svc.NodePublishVolume(ctx, r)
			return err
		}},
		{name: "publish: target is the staging path", want: codes.InvalidArgument, setup: func(t *testing.T, e *env) { e.stage(t) },
			call: func(e *env) error {
				r := e.publishReq("p1", false)
				r.TargetPath = e.staging
				_, err := e.svc.NodePublishVolume(ctx, r)
				return err
			}},
		{name: "publish: before stage", want: codes.FailedPrecondition,
			call: func(e *env) error { _, err := e.svc.NodePublishVolume(ctx, e.publishReq("p1", false)); return err }},
		{name: "publish: staging directory missing", want: codes.FailedPrecondition,
			call: func(e *env) error {
				r := e.publishReq("p1", false)
				r.StagingTargetPath = filepath.Join(e.dir, "no/such/globalmount")
				_, err := e.svc.NodePublishVolume(ctx, r)
				return err
			}},
		{name: "publish: staging holds another volume", want: codes.FailedPrecondition, setup: func(t *testing.T, e *env) { e.stage(t) },
			call: func(e *env) error {
				r := e.publishReq("p1", false)
				r.VolumeContext = otherContext
				_, err := e.svc.NodePublishVolume(ctx, r)
				return err
			}},
		{name: "publish: SINGLE_NODE_SINGLE_WRITER at a second target", want: codes.FailedPrecondition,
			setup: func(t *testing.T, e *env) {
				r := e.stageReq()
				r.VolumeCapability = rwop
				if _, err := e.svc.NodeStageVolume(ctx, r); err != nil {
					t.Fatal(err)
				}
				p := e.publishReq("p1", false)
				p.VolumeCapability = rwop
				if _, err := e.svc.NodePublishVolume(ctx, p); err != nil {
					t.Fatal(err)
				}
			},
			call: func(e *env) error {
				p := e.publishReq("p2", false)
				p.VolumeCapability = rwop
				_, err := e.svc.NodePublishVolume(ctx, p)
				return err
			}},
		{name: "publish: SINGLE_NODE_SINGLE_WRITER again at the same target", want: codes.OK,
			setup: func(t *testing.T, e *env) {
				e.stage(t)
				p := e.publishReq("p1", false)
				p.VolumeCapability = rwop
				if _, err := e.svc.NodePublishVolume(ctx, p); err != nil {
					t.Fatal(err)
				}
			},
			call: func(e *env) error {
				p := e.publishReq("p1", false)
				p.VolumeCapability = rwop
				_, err := e.svc.NodePublishVolume(ctx, p)
				return err
			}},
		{name: "publish: SINGLE_NODE_WRITER (RWO) may have many pods on the node", want: codes.OK,
			setup: func(t *testing.T, e *env) { e.stage(t); e.publish(t, "p1", false) },
			call: func(e *env) error {
				p := e.publishReq("p2", false)
				p.VolumeCapability = capability(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)
				_, err := e.svc.NodePublishVolume(ctx, p)
				return err
			}},
		{name: "publish: published read-only, asked read-write", want: codes.AlreadyExists,
			setup: func(t *testing.T, e *env) { e.stage(t); e.publish(t, "p1", true) },
			call:  func(e *env) error { _, err := e.svc.NodePublishVolume(ctx, e.publishReq("p1", false)); return err }},
		{name: "publish: target holds another mount", want: codes.AlreadyExists,
			setup: func(t *testing.T, e *env) {
				e.stage(t)
				e.fake.Add(mounter.MountPoint{Path: e.target("p1"), Root: "/", Device: "0:61", FSType: "tmpfs", Source: "tmpfs"})
			},
			call: func(e *env) error { _, err := e.svc.NodePublishVolume(ctx, e.publishReq("p1", false)); return err }},

		// NodeUnpublishVolume
		{name: "unpublish: no volume_id", want: codes.InvalidArgument,
			call: func(e *env) error {
				_, err := e.svc.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{TargetPath: e.target("p1")})
				return err
			}},
		{name: "unpublish: no target path", want: codes.InvalidArgument,
			call: func(e *env) error {
				_, err := e.svc.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: testVolume})
				return err
			}},
		{name: "unpublish: nothing there is success", want: codes.OK,
			call: func(e *env) error {
				_, err := e.svc.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: testVolume, TargetPath: e.target("p1")})
				return err
			}},

		// NodeUnstageVolume
		{name: "unstage: no volume_id", want: codes.InvalidArgument,
			call: func(e *env) error {
				_, err := e.svc.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{StagingTargetPath: e.staging})
				return err
			}},
		{name: "unstage: no staging path", want: codes.InvalidArgument,
			call: func(e *env) error {
				_, err := e.svc.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: testVolume})
				return err
			}},
		{name: "unstage: nothing there is success", want: codes.OK,
			call: func(e *env) error {
				_, err := e.svc.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: testVolume, StagingTargetPath: filepath.Join(e.dir, "gone/globalmount")})
				return err
			}},

		// NodeGetVolumeStats
		{name: "stats: no volume_id", want: codes.InvalidArgument,
			call: func(e *env) error {
				_, err := e.svc.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumePath: e.staging})
				return err
			}},
		{name: "stats: no volume path", want: codes.InvalidArgument,
			call: func(e *env) error {
				_, err := e.svc.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: testVolume})
				return err
			}},
		{name: "stats: relative path", want: codes.NotFound,
			call: func(e *env) error {
				_, err := e.svc.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: testVolume, VolumePath: "some/path"})
				return err
			}},
		{name: "stats: path does not exist", want: codes.NotFound,
			call: func(e *env) error {
				_, err := e.svc.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: testVolume, VolumePath: "/no/such/dir/mount"})
				return err
			}},
		{name: "stats: not a mount point", want: codes.NotFound,
			call: func(e *env) error {
				_, err := e.svc.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: testVolume, VolumePath: e.staging})
				return err
			}},
		{name: "stats: not an NFS mount", want: codes.NotFound,
			setup: func(t *testing.T, e *env) {
				e.fake.Add(mounter.MountPoint{Path: e.target("p1"), Root: "/", Device: "0:61", FSType: "tmpfs", Source: "tmpfs"})
			},
			call: func(e *env) error {
				_, err := e.svc.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: testVolume, VolumePath: e.target("p1")})
				return err
			}},
		{name: "stats: another volume, by kubelet's staging layout", want: codes.NotFound,
			setup: func(t *testing.T, e *env) { e.stage(t); e.publish(t, "p1", false) },
			call: func(e *env) error {
				_, err := e.svc.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: "pvc-other", VolumePath: e.target("p1")})
				return err
			}},
		{name: "stats: not what is staged at the given staging path", want: codes.NotFound,
			setup: func(t *testing.T, e *env) {
				e.stage(t)
				e.fake.Add(mounter.MountPoint{Path: e.target("p1"), Root: "/", Device: "0:62", FSType: "nfs4", Source: "10.96.0.99:/data/export"})
			},
			call: func(e *env) error {
				_, err := e.svc.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: testVolume, VolumePath: e.target("p1"), StagingTargetPath: e.staging})
				return err
			}},
		{name: "stats: published volume", want: codes.OK,
			setup: func(t *testing.T, e *env) { e.stage(t); e.publish(t, "p1", false) },
			call: func(e *env) error {
				_, err := e.svc.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: testVolume, VolumePath: e.target("p1"), StagingTargetPath: e.staging})
				return err
			}},
		{name: "stats: staged volume", want: codes.OK,
			setup: func(t *testing.T, e *env) { e.stage(t) },
			call: func(e *env) error {
				_, err := e.svc.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: testVolume, VolumePath: e.staging})
				return err
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			if tc.setup != nil {
				tc.setup(t, e)
			}
			err := tc.call(e)
			if got := code(err); got != tc.want {
				t.Errorf("code = %v (%v), want %v", got, err, tc.want)
			}
			if err != nil && status.Convert(csiserver.ToStatus(err)).Message() == "" {
				t.Error("error without a message")
			}
		})
	}
}

func TestConcurrentOperationIsAborted(t *testing.T) {
	e := newEnv(t)
	entered, unblock := make(chan struct{}), make(chan struct{})
	e.fake.MountHook = func(context.Context, string, string, []string) error {
		close(entered)
		<-unblock
		return nil
	}
	first := make(chan error, 1)
	go func() { _, err := e.svc.NodeStageVolume(context.Background(), e.stageReq()); first <- err }()
	<-entered
	tests := []struct {
		name string
		call func() error
	}{
		{name: "stage", call: func() error { _, err := e.svc.NodeStageVolume(context.Background(), e.stageReq()); return err }},
		{name: "unstage", call: func() error {
			_, err := e.svc.NodeUnstageVolume(context.Background(), &csi.NodeUnstageVolumeRequest{VolumeId: testVolume, StagingTargetPath: e.staging})
			return err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := code(tc.call()); got != codes.Aborted {
				t.Errorf("code = %v, want Aborted", got)
			}
		})
	}
	close(unblock)
	if err := <-first; err != nil {
		t.Errorf("the first stage failed: %v", err)
	}
}

func TestStageIsIdempotent(t *testing.T) {
	e := newEnv(t)
	for range 3 {
		e.stage(t)
	}
	if n := count(e.fake.Calls(), "mount -t nfs4"); n != 1 {
		t.Errorf("%d NFS mounts for three stages, want 1: %q", n, e.fake.Calls())
	}
}

func TestStageVersionFallback(t *testing.T) {
	tests := []struct {
		name       string
		context    map[string]string
		serverSays []string // versions the server speaks
		wantCode   codes.Code
		wantTried  []string
	}{
		{name: "4.2 server: one attempt", serverSays: []string{"4.2", "4.1"}, wantTried: []string{"vers=4.2"}},
		{name: "4.1-only server: fall back", serverSays: []string{"4.1"}, wantTried: []string{"vers=4.2", "vers=4.1"}},
		{name: "pinned 4.2 on a 4.1-only server: no fallback", serverSays: []string{"4.1"},
			context: map[string]string{"server": testServer, "share": "/data/export", "nfsVersion": "4.2"}, wantCode: codes.Internal, wantTried: []string{"vers=4.2"}},
		{name: "pinned 4.1", serverSays: []string{"4.2", "4.1"},
			context: map[string]string{"server": testServer, "share": "/data/export", "nfsVersion": "4.1"}, wantTried: []string{"vers=4.1"}},
		{name: "server speaks neither", serverSays: []string{"4.0"}, wantCode: codes.Internal, wantTried: []string{"vers=4.2", "vers=4.1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			var tried []string
			e.fake.MountHook = func(_ context.Context, _, _ string, opts []string) error {
				v := opts[len(opts)-1]
				tried = append(tried, v)
				if !slices.Contains(tc.serverSays, strings.TrimPrefix(v, "vers=")) {
					return &mounter.HelperError{Command: "mount", ExitCode: 32, Output: "mount.nfs: Protocol not supported"}
				}
				return nil
			}
			r := e.stageReq()
			if tc.context != nil {
				r.VolumeContext = tc.context
			}
			_, err := e.svc.NodeStageVolume(context.Background(), r)
			if got := code(err); got != tc.wantCode {
				t.Errorf("code = %v (%v), want %v", got, err, tc.wantCode)
			}
			if !slices.Equal(tried, tc.wantTried) {
				t.Errorf("tried %q, want %q", tried, tc.wantTried)
			}
		})
	}
}

// TestStageRecoversBrokenMount: a staging mount that answers ESTALE/EIO or not at
// all is unmounted with the ladder and mounted again.
func TestStageRecoversBrokenMount(t *testing.T) {
	busy := func(_ context.Context, _ string, mode mounter.UnmountMode) error {
		if mode == mounter.UnmountLazy {
			return nil
		}
		return &mounter.HelperError{Command: "umount", ExitCode: 32, Output: "umount: target is busy."}
	}
	hang := func(ctx context.Context, _ string, mode mounter.UnmountMode) error {
		if mode == mounter.UnmountLazy {
			return nil
		}
		<-ctx.Done()
		return &mounter.HelperError{Command: "umount", Killed: true, ExitCode: -1, Err: ctx.Err()}
	}
	tests := []struct {
		name       string
		statfs     error // nil: blocks (server not responding)
		unmount    func(context.Context, string, mounter.UnmountMode) error
		podMounts  int
		wantSteps  []string
		wantMounts int
	}{
		{name: "stale: plain umount suffices", statfs: unix.ESTALE, wantSteps: []string{"umount"}, wantMounts: 1},
		{name: "stale and busy: force, then lazy", statfs: unix.ESTALE, unmount: busy, podMounts: 2,
			wantSteps: []string{"umount", "umount -f", "umount -l"}, wantMounts: 1},
		{name: "EIO counts as stale", statfs: unix.EIO, unmount: busy, wantSteps: []string{"umount", "umount -f", "umount -l"}, wantMounts: 1},
		{name: "stale, helper hangs: killed, then force and lazy", statfs: unix.ESTALE, unmount: hang, podMounts: 1,
			wantSteps: []string{"umount", "umount -f", "umount -l"}, wantMounts: 1},
		// A mount whose server does not answer is left alone: a new mount could
		// not reach the server either, and the pods would lose the volume.
		{name: "not responding, no pods: left alone", unmount: hang, wantSteps: nil, wantMounts: 0},
		{name: "not responding with pods using it: left alone", unmount: hang, podMounts: 1, wantSteps: nil, wantMounts: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.stage(t)
			for i := range tc.podMounts {
				e.publish(t, "pod"+string(rune('a'+i)), false)
			}
			release := make(chan struct{})
			defer close(release)
			answered := false
			e.fake.StatfsHook = func(path string) (unix.Statfs_t, error) {
				if answered {
					return unix.Statfs_t{Blocks: 1}, nil
				}
				answered = true
				if tc.statfs == nil {
					<-release
					return unix.Statfs_t{}, nil
				}
				return unix.Statfs_t{}, tc.statfs
			}
			e.fake.UnmountHook = tc.unmount
			before := len(e.fake.Calls())
			e.stage(t)
			var steps []string
			for _, c := range e.fake.Calls()[before:] {
				if strings.HasPrefix(c, "umount") {
					steps = append(steps, strings.TrimSuffix(c, " "+e.staging))
				}
			}
			if !slices.Equal(steps, tc.wantSteps) {
				t.Errorf("unmount steps %q, want %q", steps, tc.wantSteps)
			}
			if n := count(e.fake.Calls()[before:], "mount -t nfs4"); n != tc.wantMounts {
				t.Errorf("mounted %d times, want %d", n, tc.wantMounts)
			}
		})
	}
}

// TestPublishRestagesBrokenStaging: a publish onto a stale staging mount stages
// again first, and a target left on the old mount is bound again.
func TestPublishRestagesBrokenStaging(t *testing.T) {
	e := newEnv(t)
	e.stage(t)
	e.publish(t, "old-pod", false)
	stale := true
	e.fake.StatfsHook = func(string) (unix.Statfs_t, error) {
		if stale {
			stale = false
			return unix.Statfs_t{}, unix.ESTALE
		}
		return unix.Statfs_t{Blocks: 1}, nil
	}
	e.publish(t, "new-pod", false)
	table, _ := e.fake.List()
	st, _ := mounter.FindMount(table, e.staging)
	oldT, _ := mounter.FindMount(table, e.target("old-pod"))
	newT, _ := mounter.FindMount(table, e.target("new-pod"))
	if !newT.SameTree(st) {
		t.Errorf("new pod's mount %+v is not the new staging mount %+v", newT, st)
	}
	if oldT.SameTree(st) {
		t.Fatalf("old pod's mount should still be the old one")
	}
	// Publishing the old pod again (kubelet's republish) binds it to the new mount.
	e.publish(t, "old-pod", false)
	table, _ = e.fake.List()
	oldT, _ = mounter.FindMount(table, e.target("old-pod"))
	if !oldT.SameTree(st) {
		t.Errorf("republished old pod's mount %+v is not the new staging mount", oldT)
	}
}

// TestRestartedNodeAnswersFromMountTable: a new Service over the mounts a previous
// one made (a restarted plugin) treats repeats as done and unpublishes correctly.
func TestRestartedNodeAnswersFromMountTable(t *testing.T) {
	e := newEnv(t)
	e.stage(t)
	e.publish(t, "p1", false)
	e.publish(t, "p2", true)
	restarted, err := New(e.svc.cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.svc = restarted
	before := len(e.fake.Calls())
	e.stage(t)
	e.publish(t, "p1", false)
	e.publish(t, "p2", true)
	if calls := e.fake.Calls()[before:]; len(calls) != 0 {
		t.Errorf("restarted plugin mounted again: %q", calls)
	}
	resp, err := e.svc.NodeGetVolumeStats(context.Background(), &csi.NodeGetVolumeStatsRequest{VolumeId: testVolume, VolumePath: e.target("p2")})
	if err != nil || resp.GetVolumeCondition().GetAbnormal() || len(resp.GetUsage()) != 2 {
		t.Errorf("stats after restart = %v, %v", resp, err)
	}
}

func TestUnpublishCompletesWhenServerUnreachable(t *testing.T) {
	e := newEnv(t)
	e.stage(t)
	e.publish(t, "p1", false)
	e.publish(t, "p2", false)
	e.fake.UnmountHook = func(ctx context.Context, _ string, mode mounter.UnmountMode) error {
		if mode == mounter.UnmountLazy {
			return nil
		}
		<-ctx.Done()
		return &mounter.HelperError{Command: "umount", Killed: true, ExitCode: -1, Err: ctx.Err()}
	}
	// The call's own deadline is already spent when the lazy step runs.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := e.svc.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: testVolume, TargetPath: e.target("p1")}); err != nil {
		t.Fatalf("NodeUnpublishVolume: %v", err)
	}
	if slices.Contains(e.fake.Calls(), "umount -f "+e.target("p1")) {
		t.Error("unpublish forced an unmount: that fails the other pods' requests")
	}
	if _, err := os.Stat(e.target("p1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("target directory not removed: %v", err)
	}
	if _, err := e.svc.NodeUnpublishVolume(context.Background(), &csi.NodeUnpublishVolumeRequest{VolumeId: testVolume, TargetPath: e.target("p2")}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.NodeUnstageVolume(context.Background(), &csi.NodeUnstageVolumeRequest{VolumeId: testVolume, StagingTargetPath: e.staging}); err != nil {
		t.Fatalf("NodeUnstageVolume: %v", err)
	}
	if table, _ := e.fake.List(); len(table) != 0 {
		t.Errorf("mounts left: %+v", table)
	}
}

func TestVolumeStats(t *testing.T) {
	tests := []struct {
		name         string
		statfs       func(string) (unix.Statfs_t, error)
		wantAbnormal string // substring; "" for a normal answer
	}{
		{name: "healthy: usage in bytes and inodes", statfs: func(string) (unix.Statfs_t, error) {
			return unix.Statfs_t{Bsize: 1 << 20, Frsize: 4096, Blocks: 1000, Bfree: 600, Bavail: 500, Files: 100, Ffree: 90}, nil
		}},
		{name: "stale", statfs: func(string) (unix.Statfs_t, error) { return unix.Statfs_t{}, unix.ESTALE },
			wantAbnormal: "stale file handle: NFS server 10.96.0.10"},
		{name: "server not responding", statfs: func(string) (unix.Statfs_t, error) { select {} },
			wantAbnormal: "NFS server 10.96.0.10 not responding after 200ms"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.stage(t)
			e.publish(t, "p1", false)
			e.fake.StatfsHook = tc.statfs
			resp, err := e.svc.NodeGetVolumeStats(context.Background(), &csi.NodeGetVolumeStatsRequest{VolumeId: testVolume, VolumePath: e.target("p1")})
			if err != nil {
				t.Fatal(err)
			}
			cond := resp.GetVolumeCondition()
			if tc.wantAbnormal != "" {
				if !cond.GetAbnormal() || !strings.Contains(cond.GetMessage(), tc.wantAbnormal) || len(resp.GetUsage()) != 0 {
					t.Errorf("condition %v, usage %v; want abnormal %q and no usage", cond, resp.GetUsage(), tc.wantAbnormal)
				}
				return
			}
			if cond.GetAbnormal() {
				t.Errorf("condition %v, want normal", cond)
			}
			want := []*csi.VolumeUsage{
				{Unit: csi.VolumeUsage_BYTES, Total: 1000 * 4096, Available: 500 * 4096, Used: 400 * 4096},
				{Unit: csi.VolumeUsage_INODES, Total: 100, Available: 90, Used: 10},
			}
			for i, u := range resp.GetUsage() {
				if u.GetUnit() != want[i].GetUnit() || u.GetTotal() != want[i].GetTotal() || u.GetAvailable() != want[i].GetAvailable() || u.GetUsed() != want[i].GetUsed() {
					t.Errorf("usage[%d] = %v, want %v", i, u, want[i])
				}
			}
		})
	}
}
