// Package vmlab runs tests on a real Linux kernel with nfsd and the NFS client:
// Debian's kernel under qemu (software emulation, no KVM needed), with a Debian
// root that holds the packages of both pvnfs images. It builds the project's
// static binaries and the guest test binary (test/vmlab/guest, build tag vmlab),
// passes them in over 9p, boots the guest with a deadline, and reads the results
// back from files the guest writes: never from qemu's exit status.
//
// The guest is built once into the tools cache by test/tools/install.sh vmlab
// (test/vmlab/image). docs/vmlab.md describes the lab's layout.
package vmlab

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Guest is a built guest: the files test/vmlab/image/build.sh writes.
type Guest struct {
	// Dir holds the files below.
	Dir string
	// Kernel is the uncompressed vmlinux (PVH boot) or, failing that, the bzImage.
	Kernel string
	// Initrd mounts RootFS and hands over to the share's guest-init.sh.
	Initrd string
	// RootFS is the Debian root image, attached read-only.
	RootFS string
	// KernelRelease is the guest kernel's uname -r.
	KernelRelease string
}

// Install builds the guest if the tools cache lacks it (about 4 minutes on 2
// cores) and returns it.
func Install(ctx context.Context, repo string) (Guest, error) {
	script := filepath.Join(repo, "test", "tools", "install.sh")
	cmd := exec.CommandContext(ctx, "bash", script, "vmlab")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return Guest{}, fmt.Errorf("test/tools/install.sh vmlab: %v\n%s", err, out.String())
	}
	b, err := exec.CommandContext(ctx, "bash", "-c", `. "$1" && printf '%s/vmlab-%s' "$PVNFS_TOOLS_DIR" "$VMLAB_VERSION"`,
		"versions", filepath.Join(repo, "test", "tools", "versions.sh")).Output()
	if err != nil {
		return Guest{}, fmt.Errorf("reading test/tools/versions.sh: %w", err)
	}
	return openGuest(string(b))
}

func openGuest(dir string) (Guest, error) {
	g := Guest{Dir: dir, Initrd: filepath.Join(dir, "initrd.cpio"), RootFS: filepath.Join(dir, "rootfs.ext4")}
	for _, k := range []string{"vmlinux", "vmlinuz"} {
		if _, err := os.Stat(filepath.Join(dir, k)); err == nil {
			g.Kernel = filepath.Join(dir, k)
			break
		}
	}
	rel, err := os.ReadFile(filepath.Join(dir, "kernel-release"))
	if err != nil || g.Kernel == "" {
		return Guest{}, fmt.Errorf("the guest in %s is incomplete (no kernel or kernel-release): remove it and run test/tools/install.sh vmlab", dir)
	}
	g.KernelRelease = strings.TrimSpace(string(rel))
	return g, nil
}

// Binaries are the programs a run passes into the guest, built static for it.
type Binaries struct {
	// Packages maps a file name in the share's bin/ to the main package built into it.
	Packages map[string]string
	// Tests maps a file name to the package whose test binary (go test -c -tags
	// vmlab) is built into it. The guest runs GuestTest.
	Tests map[string]string
}

// GuestTest is the test binary guest-init.sh runs.
const GuestTest = "vmlab-guest.test"

// Standard are the binaries every boot passes in: both pvnfs binaries, as their
// images carry them, and the guest test binary.
var Standard = Binaries{
	Packages: map[string]string{
		"pvnfs-server": "./cmd/pvnfs-server",
		"pvnfs-csi":    "./cmd/pvnfs-csi",
	},
	Tests: map[string]string{GuestTest: "./test/vmlab/guest"},
}

// Build compiles the binaries into dir (static: the guest has no Go toolchain and
// its libc is Debian's, not the host's).
func (b Binaries) Build(ctx context.Context, repo, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	run := func(args ...string) error {
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	for name, pkg := range b.Packages {
		if err := run("build", "-trimpath", "-o", filepath.Join(dir, name), pkg); err != nil {
			return err
		}
	}
	for name, pkg := range b.Tests {
		if err := run("test", "-c", "-trimpath", "-tags", "vmlab", "-o", filepath.Join(dir, name), pkg); err != nil {
			return err
		}
	}
	return nil
}

// Run is one boot of the guest.
type Run struct {
	// Dir is the run's share: bin/ with the binaries, out/ with what the guest
	// writes, console.log with the serial console.
	Dir string
	// Args are the guest test binary's flags.
	Args []string
	// Timeout bounds the whole boot, from qemu's start to its exit.
	Timeout time.Duration
	// MemoryMiB is the guest's memory.
	MemoryMiB int
	// Console, if set, receives the console lines as they come (e.g. t.Log).
	Console func(line string)
}

// Result is what a boot left behind.
type Result struct {
	// RC is the guest test binary's exit status; -1 when it never wrote one.
	RC int
	// Output is the guest test binary's output (test2json stream).
	Output []byte
	// Wall is how long qemu ran.
	Wall time.Duration
	// ConsoleLog is the path of the serial console log.
	ConsoleLog string
}

// Console markers the host looks for.
const (
	markerInitFailed = "LAB_INIT_FAILED"
	markerPanic      = "Kernel panic"
	markerDone       = "LAB_GUEST_DONE"
)

// guestPowerOffTimeout is how long the guest gets to power off once its tests
// are done.
const guestPowerOffTimeout = 20 * time.Second

// Boot runs the guest once with the run's share and returns what the guest test
// binary wrote. It fails, with the console's tail, when the guest did not get to
// write its exit status: a kernel panic, an init failure or the deadline.
func (g Guest) Boot(ctx context.Context, repo string, r Run) (Result, error) {
	res := Result{RC: -1, ConsoleLog: filepath.Join(r.Dir, "console.log")}
	out := filepath.Join(r.Dir, "out")
	if err := os.RemoveAll(out); err != nil {
		return res, err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return res, err
	}
	init, err := os.ReadFile(filepath.Join(repo, "test", "vmlab", "guest-init.sh"))
	if err != nil {
		return res, err
	}
	if err := os.WriteFile(filepath.Join(r.Dir, "guest-init.sh"), init, 0o755); err != nil {
		return res, err
	}
	if err := os.WriteFile(filepath.Join(r.Dir, "run.args"), []byte(strings.Join(r.Args, "\n")+"\n"), 0o644); err != nil {
		return res, err
	}
	console, err := os.Create(res.ConsoleLog)
	if err != nil {
		return res, err
	}
	defer console.Close()

	// The caller's deadline may come first: name the one that applies when it passes.
	limit := r.Timeout
	if d, ok := ctx.Deadline(); ok && time.Until(d) < limit {
		limit = time.Until(d).Round(time.Second)
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	mem := r.MemoryMiB
	if mem == 0 {
		mem = 1536
	}
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", g.qemuArgs(r.Dir, mem)...)
	// The guest powers itself off; a guest that hangs is killed at the deadline.
	cmd.WaitDelay = 5 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return res, err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return res, fmt.Errorf("starting qemu: %w", err)
	}
	var sawPanic, sawInitFailure string
	var doneTimer *time.Timer
	defer func() {
		if doneTimer != nil {
			doneTimer.Stop()
		}
	}()
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		fmt.Fprintf(console, "%8.2f %s\n", time.Since(start).Seconds(), line)
		switch {
		case strings.Contains(line, markerPanic) && sawPanic == "":
			sawPanic = line
		case strings.Contains(line, markerInitFailed) && sawInitFailure == "":
			sawInitFailure = line
		case strings.Contains(line, markerDone) && doneTimer == nil:
			// The results are in the share; a guest whose power-off hangs (a
			// kernel thread stuck on a test's NFS mount) must not hold the run.
			doneTimer = time.AfterFunc(guestPowerOffTimeout, func() { _ = cmd.Process.Kill() })
		}
		if r.Console != nil {
			r.Console(line)
		}
	}
	waitErr := cmd.Wait()
	res.Wall = time.Since(start)
	res.Output, _ = os.ReadFile(filepath.Join(out, "guest.out"))
	if b, err := os.ReadFile(filepath.Join(out, "rc")); err == nil {
		if rc, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			res.RC = rc
		}
	}
	if res.RC >= 0 && sawPanic == "" {
		return res, nil
	}
	why := "the guest did not write its test exit status"
	switch {
	case sawPanic != "":
		why = "the guest kernel panicked: " + sawPanic
	case sawInitFailure != "":
		why = "the guest's init failed: " + sawInitFailure
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		why = fmt.Sprintf("the guest did not finish within %s (its own limit %s, or what was left of the caller's deadline; hung, or a busy machine)", limit, r.Timeout)
	case waitErr != nil:
		why = fmt.Sprintf("qemu failed: %v: %s", waitErr, strings.TrimSpace(stderr.String()))
	}
	return res, fmt.Errorf("%s\nlast console lines (%s):\n%s", why, res.ConsoleLog, tail(res.ConsoleLog, 60))
}

// qemuArgs: TCG (there is no KVM here), one vCPU (a second made the proof no
// faster), no network device (every address the tests use lives in the guest's
// own namespaces), the root image read-only and the share over 9p.
func (g Guest) qemuArgs(share string, memMiB int) []string {
	return []string{
		"-machine", "q35", "-accel", "tcg", "-cpu", "qemu64", "-smp", "1", "-m", strconv.Itoa(memMiB),
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot", "-serial", "stdio", "-monitor", "none",
		"-kernel", g.Kernel, "-initrd", g.Initrd,
		// notsc: TCG's TSC is miscalibrated; panic=-1 with -no-reboot ends qemu at
		// once on a panic instead of waiting for the deadline.
		"-append", "console=ttyS0 panic=-1 loglevel=4 rdinit=/init notsc",
		"-drive", "file=" + g.RootFS + ",if=virtio,format=raw,readonly=on",
		"-virtfs", "local,path=" + share + ",mount_tag=share,security_model=none,id=share",
		"-device", "virtio-rng-pci",
	}
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	b, _ := io.ReadAll(f)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
