package node

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"

	"github.com/pvnfs/pvnfs/pkg/mounter"
	"github.com/pvnfs/pvnfs/pkg/volume"
)

// maxStacked bounds how many mounts stacked at one path an unmount removes; more
// means something else keeps mounting there.
const maxStacked = 8

// canonical returns path as the mount table shows it, and false when its parent
// directory does not exist (then nothing can be mounted there).
func canonical(path string) (string, bool, error) {
	c, err := mounter.CanonicalPath(path)
	if errors.Is(err, fs.ErrNotExist) {
		return filepath.Clean(path), false, nil
	}
	if err != nil {
		return "", false, err
	}
	return c, true, nil
}

// beginTeardown starts an unstage or unpublish of volume id at path (the request's
// field named field): it validates both, and holds the volume's in-flight key for
// the canonical path until release is called. A nil release with a nil error means
// there is nothing to tear down, as the path's parent directory is gone.
func (s *Service) beginTeardown(id, field, path string) (canon string, release func(), err error) {
	if err := requireVolumeID(id); err != nil {
		return "", nil, err
	}
	if err := requirePath(field, path); err != nil {
		return "", nil, err
	}
	canon, parentExists, err := canonical(path)
	if err != nil || !parentExists {
		return canon, nil, err
	}
	release, ok := s.inflight.TryAcquire(key(id, canon))
	if !ok {
		return "", nil, status.Errorf(codes.Aborted, "an operation on volume %s at %s is already in progress", id, canon)
	}
	return canon, release, nil
}

// isNFS reports whether m is an NFS mount (or a bind mount of one: a bind shows
// the type and source of what it binds).
func isNFS(m mounter.MountPoint) bool { return m.FSType == "nfs4" || m.FSType == "nfs" }

// sameSource reports whether two NFS sources name the same export, ignoring how
// the share is spelled ("/data/export/" and "/data/export").
func sameSource(a, b string) bool {
	sa, sb := splitSource(a), splitSource(b)
	return sa != (volume.Context{}) && sa == sb
}

// splitSource parses "server:/share" or "[v6]:/share" into a volume.Context whose
// Server and Share are canonical; the zero Context when it is neither.
func splitSource(src string) volume.Context {
	i := len(src) - 1
	for i >= 0 && src[i] != ':' {
		i--
	}
	if i <= 0 {
		return volume.Context{}
	}
	server, share := src[:i], src[i+1:]
	if len(server) > 1 && server[0] == '[' && server[len(server)-1] == ']' {
		server = server[1 : len(server)-1]
	}
	c, err := volume.ParseContext(map[string]string{volume.ContextServer: server, volume.ContextShare: share})
	if err != nil {
		return volume.Context{}
	}
	c.Share = filepath.Clean(c.Share)
	return c
}

// serverOf returns the server of an NFS source, for messages.
func serverOf(src string) string {
	if c := splitSource(src); c.Server != "" {
		return c.Server
	}
	return src
}

// unmountAll removes every mount stacked at path. force allows umount -f, which
// for NFS fails the requests in flight of every other mount of the same export;
// it is allowed only when no other mount of it is left on the node.
func (s *Service) unmountAll(ctx context.Context, path string, force bool) error {
	for range maxStacked {
		table, err := s.mounter.List()
		if err != nil {
			return err
		}
		top, mounted := mounter.FindMount(table, path)
		if !mounted {
			return nil
		}
		if err := s.unmountOne(ctx, top, force); err != nil {
			return err
		}
	}
	return fmt.Errorf("%s is still a mount point after %d unmounts: something keeps mounting there", path, maxStacked)
}

// unmountOne removes mount m: umount, then umount -f (if force), then umount -l,
// each with its own deadline, until m is gone from the table. The lazy step runs
// even when ctx is done: it never waits for the server, and without it a call on
// a dead server could never finish.
func (s *Service) unmountOne(ctx context.Context, m mounter.MountPoint, force bool) error {
	modes := []mounter.UnmountMode{mounter.UnmountNormal}
	if force {
		modes = append(modes, mounter.UnmountForce)
	}
	modes = append(modes, mounter.UnmountLazy)
	var errs []error
	for _, mode := range modes {
		if mode != mounter.UnmountLazy && ctx.Err() != nil {
			continue
		}
		parent := ctx
		if mode == mounter.UnmountLazy {
			parent = context.WithoutCancel(ctx)
		}
		stepCtx, cancel := context.WithTimeout(parent, s.cfg.UnmountTimeout)
		err := s.mounter.Unmount(stepCtx, m.Path, mode)
		cancel()
		gone, lerr := s.gone(m)
		if lerr != nil {
			return lerr
		}
		if gone {
			klog.V(2).InfoS("Unmounted", "path", m.Path, "source", m.Source, "how", mode.String())
			return nil
		}
		if err == nil {
			err = errors.New("the helper succeeded but the mount is still there")
		}
		klog.V(2).InfoS("Unmount step left the mount in place, trying harder", "path", m.Path, "how", mode.String(), "err", err)
		errs = append(errs, fmt.Errorf("%s: %w", mode, err))
	}
	return fmt.Errorf("unmounting %s: still mounted: %w", m.Path, errors.Join(errs...))
}

// gone reports whether mount m has left the table.
func (s *Service) gone(m mounter.MountPoint) (bool, error) {
	table, err := s.mounter.List()
	if err != nil {
		return false, err
	}
	for _, t := range table {
		if t.ID == m.ID && t.Path == m.Path {
			return false, nil
		}
	}
	return true, nil
}

// othersOf returns the mounts showing the same tree as m, except those at the
// given paths: for a staging mount, the pods' bind mounts of it.
func othersOf(table []mounter.MountPoint, m mounter.MountPoint, except ...string) []string {
	var out []string
next:
	for _, t := range table {
		if !t.SameTree(m) {
			continue
		}
		for _, e := range except {
			if t.Path == e {
				continue next
			}
		}
		out = append(out, t.Path)
	}
	return out
}
