package guest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// MainRole runs this binary's role when a fixture started it as one (a pod's
// PID 1, an application) and reports whether it did; the caller exits with code.
// Call it first thing in TestMain.
func MainRole() (handled bool, code int) {
	var err error
	switch role := os.Getenv(roleEnv); role {
	case "":
		return false, 0
	case rolePodInit:
		err = runPodInit(os.Getenv(podSpecEnv))
	case roleApp:
		err = runApp(os.Getenv(appSpecEnv))
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if err == nil {
		return true, 0
	}
	fmt.Fprintf(os.Stderr, "lab role %s: %v\n", os.Getenv(roleEnv), err)
	return true, 1
}

// runPodInit turns this process, PID 1 of fresh mount, UTS, PID and IPC
// namespaces, into the server container, the way runc does: the image as the
// read-only lower layer of an overlayfs root with a writable upper layer, the
// pod's volumes, /proc, /sys and /dev as the security context allows, pivot_root,
// then the capabilities, and exec of pvnfs-server. It returns only on failure.
func runPodInit(specFile string) error {
	b, err := os.ReadFile(specFile)
	if err != nil {
		return err
	}
	var s podInit
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	// Nothing mounted here may propagate back to the guest's namespace.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make / private: %w", err)
	}
	if err := unix.Sethostname([]byte(s.Hostname)); err != nil {
		return fmt.Errorf("sethostname: %w", err)
	}
	upper, work, root := filepath.Join(s.Layer, "upper"), filepath.Join(s.Layer, "work"), filepath.Join(s.Layer, "rootfs")
	for _, d := range []string{upper, work, root} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := unix.Mount("overlay", root, "overlay", 0,
		fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", ImageDir, upper, work)); err != nil {
		return fmt.Errorf("mount the overlay root: %w", err)
	}
	for _, m := range s.Mounts {
		if err := mountInto(root, m); err != nil {
			return err
		}
	}
	if err := mountSpecial(root, s.Privileged); err != nil {
		return err
	}
	if err := kubeletFiles(s, root); err != nil {
		return err
	}
	if err := pivot(root); err != nil {
		return err
	}
	if s.ReadOnlyRoot {
		if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
			return fmt.Errorf("remount / read-only: %w", err)
		}
	}
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"}
	argv := append([]string{serverImagePath}, s.Args...)
	if !s.Privileged {
		// util-linux's setpriv from the image sets what the runtime would: the
		// bounding set to the added capabilities (root's permitted and effective
		// sets follow it at exec), nothing inheritable, and no_new_privs for
		// allowPrivilegeEscalation: false. It execs pvnfs-server as PID 1.
		bounding := "-all"
		for _, c := range s.Caps {
			bounding += ",+" + c
		}
		pre := []string{"/usr/bin/setpriv", "--bounding-set=" + bounding, "--inh-caps=-all"}
		if s.NoNewPrivs {
			pre = append(pre, "--no-new-privs")
		}
		argv = append(append(pre, "--"), argv...)
	}
	return syscall.Exec(argv[0], argv, env)
}

// mountInto mounts one of the pod's volumes below root.
func mountInto(root string, m podMount) error {
	target := filepath.Join(root, m.Target)
	if m.Tmpfs != "" {
		if err := os.MkdirAll(target, 0o755); err != nil {
			return err
		}
		if err := unix.Mount("tmpfs", target, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size="+m.Tmpfs); err != nil {
			return fmt.Errorf("mount the emptyDir at %s: %w", m.Target, err)
		}
		return nil
	}
	st, err := os.Stat(m.Source)
	if err != nil {
		return err
	}
	if st.IsDir() {
		err = os.MkdirAll(target, 0o755)
	} else {
		err = touch(target)
	}
	if err != nil {
		return err
	}
	if err := unix.Mount(m.Source, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s at %s: %w", m.Source, m.Target, err)
	}
	return nil
}

// mountSpecial mounts /proc, /sys, /dev and the termination log. A privileged
// container gets the node's /dev and a writable /sys, as runc gives it; any other
// gets a minimal /dev, a read-only /sys and the runtime's masked and read-only
// /proc paths.
func mountSpecial(root string, privileged bool) error {
	proc := filepath.Join(root, "proc")
	if err := os.MkdirAll(proc, 0o555); err != nil {
		return err
	}
	if err := unix.Mount("proc", proc, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	sysFlags := uintptr(unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)
	if !privileged {
		sysFlags |= unix.MS_RDONLY
	}
	if err := unix.Mount("sysfs", filepath.Join(root, "sys"), "sysfs", sysFlags, ""); err != nil {
		return fmt.Errorf("mount /sys: %w", err)
	}
	dev := filepath.Join(root, "dev")
	if privileged {
		if err := unix.Mount("/dev", dev, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind /dev: %w", err)
		}
	} else if err := minimalDev(dev); err != nil {
		return err
	}
	// The kubelet binds a file of the pod's onto /dev/termination-log.
	tl := filepath.Join(filepath.Dir(root), "termination-log")
	if err := touch(tl); err != nil {
		return err
	}
	if err := touch(filepath.Join(root, terminationLog)); err != nil {
		return err
	}
	if err := unix.Mount(tl, filepath.Join(root, terminationLog), "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind the termination log: %w", err)
	}
	if privileged {
		return nil
	}
	for _, p := range []string{"kcore", "keys", "timer_list", "sched_debug"} {
		if err := unix.Mount("/dev/null", filepath.Join(proc, p), "", unix.MS_BIND, ""); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("mask /proc/%s: %w", p, err)
		}
	}
	for _, p := range []string{"bus", "fs", "irq", "sys", "sysrq-trigger"} {
		path := filepath.Join(proc, p)
		if err := unix.Mount(path, path, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind /proc/%s: %w", p, err)
		}
		if err := unix.Mount("", path, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
			return fmt.Errorf("make /proc/%s read-only: %w", p, err)
		}
	}
	return nil
}

// kubeletFiles binds the files the kubelet manages in every container:
// /etc/hosts with the pod's hostname and address (programs that resolve their
// own hostname, such as Ganesha's ID mapper, wait for DNS without it),
// /etc/hostname and /etc/resolv.conf (the lab has no cluster DNS: lookups fail at
// once instead of timing out).
func kubeletFiles(s podInit, root string) error {
	for name, content := range map[string]string{
		"hosts":       fmt.Sprintf("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n%s\t%s\n", s.IP, s.Hostname),
		"hostname":    s.Hostname + "\n",
		"resolv.conf": "options timeout:1 attempts:1\n",
	} {
		src := filepath.Join(s.Layer, name)
		if err := os.WriteFile(src, []byte(content), 0o644); err != nil {
			return err
		}
		if err := mountInto(root, podMount{Source: src, Target: "/etc/" + name}); err != nil {
			return err
		}
	}
	return nil
}

// minimalDev is a container runtime's /dev: a tmpfs with the usual nodes bound
// from the node's, /dev/shm and /dev/pts.
func minimalDev(dev string) error {
	if err := unix.Mount("tmpfs", dev, "tmpfs", unix.MS_NOSUID, "mode=755,size=65536k"); err != nil {
		return fmt.Errorf("mount /dev: %w", err)
	}
	for _, n := range []string{"null", "zero", "full", "random", "urandom", "tty"} {
		t := filepath.Join(dev, n)
		if err := touch(t); err != nil {
			return err
		}
		if err := unix.Mount("/dev/"+n, t, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind /dev/%s: %w", n, err)
		}
	}
	for _, d := range []string{"shm", "pts"} {
		if err := os.MkdirAll(filepath.Join(dev, d), 0o755); err != nil {
			return err
		}
	}
	if err := unix.Mount("shm", filepath.Join(dev, "shm"), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=1777,size=65536k"); err != nil {
		return fmt.Errorf("mount /dev/shm: %w", err)
	}
	return nil
}

// pivot makes root the root of this mount namespace and drops the old one.
func pivot(root string) error {
	// pivot_root needs the new root to be a mount point of its own.
	if err := unix.Mount(root, root, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind the root onto itself: %w", err)
	}
	old := filepath.Join(root, ".pivot")
	if err := os.MkdirAll(old, 0o700); err != nil {
		return err
	}
	if err := unix.PivotRoot(root, old); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	if err := unix.Unmount("/.pivot", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach the old root: %w", err)
	}
	return os.Remove("/.pivot")
}

func touch(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}
