//go:build vmlab

package guest_test

import (
	"strings"
	"testing"
	"time"

	"github.com/pvnfs/pvnfs/test/vmlab/guest"
)

// TestServerAdmitsOnlyItsClients: a server told the nodes' networks
// (pvnfs-server --clients, which the controller passes from pvnfs-csi
// --nfs-clients) serves a node inside them and refuses a node outside, to the
// kernel's NFS client, on the real nfsd and on Ganesha. The list names clients, not
// the server, so it is the same after the server moves to a new pod address: the
// node inside keeps its mount through the move, the one outside stays refused.
func TestServerAdmitsOnlyItsClients(t *testing.T) {
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			ctx := testContext(t, 5*time.Minute)
			inside := newNode(t, ctx, "node-trusted-"+engine)
			outside := newNode(t, ctx, "node-outside-"+engine)
			v := newVolume(t, ctx, "trust-"+engine, map[string]string{"serverEngine": engine})
			v.Config.Clients = []string{inside.Net.IP + "/32"}
			for _, n := range []*guest.Node{inside, outside} {
				if err := v.Attach(ctx, n); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := v.Start(ctx, nil); err != nil {
				t.Fatal(err)
			}

			mountVolume(t, ctx, inside, v, "/mnt/trusted", "4.2")
			defer func() { _ = inside.Unmount(ctx, "/mnt/trusted") }()
			if _, err := inside.Exec(ctx, "sh", "-c", "echo hello > /mnt/trusted/hello && sync"); err != nil {
				t.Fatalf("writing from the node inside: %v", err)
			}

			refused := func(when string) {
				t.Helper()
				// retry=0: mount.nfs would otherwise retry a refusal for two minutes.
				err := outside.Mount(ctx, v.Context().Source(), "/mnt/outside", append(mountOptions("4.2"), "retry=0"))
				if err == nil {
					out, _ := outside.Exec(ctx, "cat", "/mnt/outside/hello")
					_ = outside.Unmount(ctx, "/mnt/outside")
					t.Fatalf("%s: the node outside %v mounted the export (read %q)", when, v.Config.Clients, strings.TrimSpace(out))
				}
				t.Logf("%s: the node outside was refused: %v", when, err)
				// Nor does the pseudo-root lead to the data, where a server shows it.
				if err := outside.Mount(ctx, guest.ClusterIP+":/", "/mnt/outside-root", append(mountOptions("4.2"), "retry=0")); err == nil {
					out, catErr := outside.Exec(ctx, "cat", "/mnt/outside-root/data/export/hello")
					_, _ = outside.Exec(ctx, "umount", "-R", "/mnt/outside-root")
					if catErr == nil {
						t.Errorf("%s: the node outside read %q through the pseudo-root", when, strings.TrimSpace(out))
					}
				}
			}
			refused("first server")

			// Failover: the server stops and a new pod, with a new address, takes over.
			if err := v.Pod.Terminate(30 * time.Second); err != nil {
				t.Error(err) // go on: the mount needs a server again to be unmounted
			}
			if _, err := v.Start(ctx, nil); err != nil {
				t.Fatal(err)
			}
			out, err := inside.Exec(ctx, "cat", "/mnt/trusted/hello")
			if err != nil || strings.TrimSpace(out) != "hello" {
				t.Errorf("after the move, the node inside read %q, %v; want hello", out, err)
			}
			if _, err := inside.Exec(ctx, "sh", "-c", "echo again > /mnt/trusted/again && sync"); err != nil {
				t.Errorf("after the move, writing from the node inside: %v", err)
			}
			refused("after the move")
		})
	}
}
