package mounter

import (
	"fmt"
	"path/filepath"
	"strings"
)

// CanonicalPath resolves symlinks in path's parent directories, but not in path
// itself, and returns the path as mountinfo would show it. Only the parent is
// resolved because path may be a mount point of a dead NFS server, where any stat
// hangs; its parents are local directories. It fails (wrapping fs.ErrNotExist) when
// the parent does not exist.
func CanonicalPath(path string) (string, error) {
	if !filepath.IsAbs(path) {
		return "", fmt.Errorf("%q is not an absolute path", path)
	}
	clean := filepath.Clean(path)
	if clean == "/" {
		return clean, nil
	}
	dir, base := filepath.Split(clean)
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", fmt.Errorf("resolving the parent directory of %s: %w", path, err)
	}
	return filepath.Join(real, base), nil
}

// FindMount returns the topmost mount at path (a canonical path), and whether there
// is one. When several mounts are stacked at one path, the last one in the table is
// the one on top.
func FindMount(table []MountPoint, path string) (MountPoint, bool) {
	for i := len(table) - 1; i >= 0; i-- {
		if table[i].Path == path {
			return table[i], true
		}
	}
	return MountPoint{}, false
}

// ContainingMount returns the mount that holds path: the topmost mount whose
// mount point is path or its nearest ancestor.
func ContainingMount(table []MountPoint, path string) (MountPoint, bool) {
	best, found := MountPoint{}, false
	for _, m := range table {
		if !within(path, m.Path) {
			continue
		}
		// Later entries are on top of earlier ones at the same path; a longer
		// mount point is nearer.
		if !found || len(m.Path) >= len(best.Path) {
			best, found = m, true
		}
	}
	return best, found
}

// within reports whether path is dir or below it.
func within(path, dir string) bool {
	if dir == "/" {
		return strings.HasPrefix(path, "/")
	}
	return path == dir || strings.HasPrefix(path, dir+"/")
}
