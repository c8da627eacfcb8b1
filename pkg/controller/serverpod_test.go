package controller

import (
	"slices"
	"testing"

	"github.com/pvnfs/pvnfs/pkg/parameters"
)

func TestServerRuntimeFor(t *testing.T) {
	tests := []struct {
		name           string
		engine         string
		wantPrivileged bool
		wantCaps       []string // added capabilities, sorted
		wantMounts     []string // extra mount paths
		wantReadOnly   bool
	}{
		{name: "kernel is privileged and needs nothing else", engine: parameters.EngineKernel, wantPrivileged: true},
		{name: "ganesha keeps seven capabilities and two scratch dirs", engine: parameters.EngineGanesha,
			wantCaps:     []string{"CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "SETGID", "SETUID"},
			wantMounts:   []string{GaneshaRunDir, GaneshaTmpDir},
			wantReadOnly: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rt := ServerRuntimeFor(tc.engine)
			sc := rt.SecurityContext
			if sc == nil || sc.Privileged == nil || *sc.Privileged != tc.wantPrivileged {
				t.Fatalf("Privileged = %v, want %v", sc, tc.wantPrivileged)
			}
			var caps []string
			if sc.Capabilities != nil {
				for _, c := range sc.Capabilities.Add {
					caps = append(caps, string(c))
				}
				if !slices.Equal(toStrings(sc.Capabilities.Drop), []string{"ALL"}) {
					t.Errorf("Drop = %v, want [ALL]", sc.Capabilities.Drop)
				}
			}
			slices.Sort(caps)
			if !slices.Equal(caps, tc.wantCaps) {
				t.Errorf("added capabilities = %v, want %v", caps, tc.wantCaps)
			}
			if got := sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem; got != tc.wantReadOnly {
				t.Errorf("ReadOnlyRootFilesystem = %v, want %v", got, tc.wantReadOnly)
			}
			if !tc.wantPrivileged && (sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation) {
				t.Error("an unprivileged server must not allow privilege escalation")
			}
			var mounts []string
			for _, m := range rt.Mounts {
				mounts = append(mounts, m.MountPath)
				found := false
				for _, v := range rt.Volumes {
					if v.Name == m.Name {
						found = v.EmptyDir != nil && v.EmptyDir.SizeLimit != nil
					}
				}
				if !found {
					t.Errorf("mount %s has no size-limited emptyDir volume %q", m.MountPath, m.Name)
				}
			}
			if !slices.Equal(mounts, tc.wantMounts) {
				t.Errorf("mounts = %v, want %v", mounts, tc.wantMounts)
			}
			if len(rt.Volumes) != len(rt.Mounts) {
				t.Errorf("%d volumes for %d mounts", len(rt.Volumes), len(rt.Mounts))
			}
		})
	}
}

// TestServerRuntimeForReturnsCopies proves one Deployment's changes cannot leak into the
// next: every call builds new objects.
func TestServerRuntimeForReturnsCopies(t *testing.T) {
	a := ServerRuntimeFor(parameters.EngineGanesha)
	a.SecurityContext.Capabilities.Add[0] = "SYS_ADMIN"
	*a.SecurityContext.Privileged = true
	b := ServerRuntimeFor(parameters.EngineGanesha)
	if b.SecurityContext.Capabilities.Add[0] == "SYS_ADMIN" || *b.SecurityContext.Privileged {
		t.Error("ServerRuntimeFor shares state between calls")
	}
}

func toStrings[T ~string](v []T) []string {
	out := make([]string, len(v))
	for i, s := range v {
		out[i] = string(s)
	}
	return out
}
