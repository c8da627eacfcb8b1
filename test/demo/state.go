package demo

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pvnfs/pvnfs/test/localcluster"
)

// Files in the state directory.
const (
	// lockName is flock'ed by the running demo for its whole life.
	lockName = "lock"
	// pidName holds "<pid> <start time>" of the running demo.
	pidName = "demo.pid"
	// processesName holds one line per process the demo started:
	// "<pid> <start time> <mount namespace> <command>".
	processesName = "processes"
	// etcdName holds etcd's data directory (under /dev/shm).
	etcdName = "etcd-dir"
	// etcdPrefix is where localcluster puts etcd's data; only such directories are
	// ever removed by a cleanup.
	etcdPrefix = localcluster.EtcdDataPrefix
)

// State is the demo's claim on its state directory. The demo holds an exclusive
// flock on <dir>/lock while it runs and writes down what it started, so that Stop,
// from another shell, can ask it to end, and can clean up after a demo that was
// killed before it could.
type State struct {
	Dir  string
	lock *os.File
}

// Claim takes the state directory for a new demo. It fails when a demo holds it;
// what a demo that did not finish left there (processes, etcd's directory, files) is
// removed first and reported to out.
func Claim(dir string, out io.Writer) (*State, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			pid, _, _ := readPID(filepath.Join(dir, pidName))
			return nil, fmt.Errorf("a demo is already running in %s (pid %d): end it with Ctrl-C in its shell or `make demo-down`", dir, pid)
		}
		return nil, fmt.Errorf("locking %s: %w", f.Name(), err)
	}
	cleanup(dir, out)
	start, err := startTime(os.Getpid())
	if err != nil {
		f.Close()
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, pidName), fmt.Appendf(nil, "%d %d\n", os.Getpid(), start), 0o644); err != nil {
		f.Close()
		return nil, err
	}
	return &State{Dir: dir, lock: f}, nil
}

// Record writes down the demo's child processes (the control plane, the driver, the
// sidecar, the node plugins and their namespace holders) and etcd's data directory.
// It is called after every step, so a killed demo leaves an up-to-date list.
func (st *State) Record() {
	var b strings.Builder
	etcdDir := ""
	for _, p := range children(os.Getpid()) {
		fmt.Fprintf(&b, "%d %d %s %s\n", p.pid, p.start, p.mntNS, p.comm)
		if p.comm == "etcd" {
			etcdDir = etcdDataDir(p.pid)
		}
	}
	_ = writeAtomic(filepath.Join(st.Dir, processesName), b.String())
	if etcdDir != "" {
		_ = writeAtomic(filepath.Join(st.Dir, etcdName), etcdDir+"\n")
	}
}

// Leftovers lists what is still there of what the demo started: child processes
// still running and etcd's directory. Empty after a complete teardown.
func (st *State) Leftovers() []string {
	var out []string
	for _, p := range children(os.Getpid()) {
		out = append(out, fmt.Sprintf("process %d (%s)", p.pid, p.comm))
	}
	if b, err := os.ReadFile(filepath.Join(st.Dir, etcdName)); err == nil {
		d := strings.TrimSpace(string(b))
		if _, err := os.Stat(d); err == nil {
			out = append(out, "etcd directory "+d)
		}
	}
	return out
}

// Release ends the claim. With keepLogs the directory stays, without the records of
// processes (they are gone), so its logs can be read; otherwise it is removed.
func (st *State) Release(keepLogs bool) error {
	defer st.lock.Close()
	if keepLogs {
		for _, f := range []string{pidName, processesName, etcdName, "bin"} {
			_ = os.RemoveAll(filepath.Join(st.Dir, f))
		}
		return nil
	}
	return os.RemoveAll(st.Dir)
}

// Stop ends the demo running in dir, or cleans up after one that did not finish:
// it sends the demo SIGTERM and waits for it to remove everything (at most
// stopGrace; then it kills it), then kills whatever the demo's records name that
// is still running, removes etcd's directory and the state directory.
func Stop(dir string, out io.Writer, stopGrace time.Duration) error {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(out, "No demo state in %s: nothing to stop.\n", dir)
		return nil
	}
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	locked := func() bool { return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil }
	if locked() {
		fmt.Fprintf(out, "No demo is running; removing what one left in %s.\n", dir)
	} else {
		pid, start, err := readPID(filepath.Join(dir, pidName))
		if err != nil {
			return fmt.Errorf("a demo holds %s but its pid file is unreadable: %w", dir, err)
		}
		fmt.Fprintf(out, "Stopping the demo (pid %d); it removes everything it started...\n", pid)
		signalIfSame(pid, start, syscall.SIGTERM)
		if !waitFor(locked, stopGrace) {
			fmt.Fprintf(out, "The demo did not finish within %v: killing it and cleaning up after it.\n", stopGrace)
			signalIfSame(pid, start, syscall.SIGKILL)
			if !waitFor(locked, 30*time.Second) {
				return fmt.Errorf("the demo (pid %d) still holds %s after SIGKILL", pid, dir)
			}
		}
	}
	cleanup(dir, out)
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	fmt.Fprintf(out, "Done: nothing of the demo is running, and %s is removed.\n", dir)
	return nil
}

// cleanup kills what a demo that did not finish left running, by its records, and
// removes its files except the lock. The caller holds the lock, so no demo runs.
func cleanup(dir string, out io.Writer) {
	b, err := os.ReadFile(filepath.Join(dir, processesName))
	if err == nil {
		var killed []string
		namespaces := map[string]bool{}
		self, _ := os.Readlink("/proc/self/ns/mnt")
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var pid int
			var start uint64
			var ns, comm string
			if n, _ := fmt.Sscanf(line, "%d %d %s %s", &pid, &start, &ns, &comm); n < 3 {
				continue
			}
			if ns != self && strings.HasPrefix(ns, "mnt:") {
				namespaces[ns] = true
			}
			if signalGroupIfSame(pid, start, syscall.SIGKILL) {
				killed = append(killed, fmt.Sprintf("%s (%d)", comm, pid))
			}
		}
		// Helpers a node plugin started (a hung mount) live in its namespace; killing
		// everything in it makes the namespace, and all its mounts, go away.
		for _, pid := range pidsInNamespaces(namespaces) {
			if syscall.Kill(pid, syscall.SIGKILL) == nil {
				killed = append(killed, fmt.Sprintf("pid %d in a node's mount namespace", pid))
			}
		}
		if len(killed) > 0 {
			fmt.Fprintf(out, "Killed what an unfinished demo left running: %s\n", strings.Join(killed, ", "))
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, etcdName)); err == nil {
		d := filepath.Clean(strings.TrimSpace(string(b)))
		if strings.HasPrefix(d, etcdPrefix) {
			if _, err := os.Stat(d); err == nil {
				_ = os.RemoveAll(d)
				fmt.Fprintf(out, "Removed etcd's directory %s\n", d)
			}
		}
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() != lockName {
			_ = os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
}

// proc is a process as /proc shows it.
type proc struct {
	pid   int
	start uint64
	mntNS string
	comm  string
}

// children lists the running child processes of pid.
func children(parent int) []proc {
	var out []proc
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readStat(pid)
		if err != nil || st.ppid != parent || st.state == "Z" {
			continue
		}
		ns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid))
		out = append(out, proc{pid: pid, start: st.start, mntNS: ns, comm: st.comm})
	}
	return out
}

// pidsInNamespaces lists the processes in any of the mount namespaces.
func pidsInNamespaces(namespaces map[string]bool) []int {
	if len(namespaces) == 0 {
		return nil
	}
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid)); err == nil && namespaces[ns] {
			out = append(out, pid)
		}
	}
	return out
}

// stat is what the demo needs of /proc/<pid>/stat.
type stat struct {
	comm, state string
	ppid, pgrp  int
	start       uint64
}

func readStat(pid int) (stat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return stat{}, err
	}
	s := string(b)
	open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || closing < open {
		return stat{}, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	f := strings.Fields(s[closing+1:])
	// Fields after the command: state(3) ppid(4) pgrp(5) ... starttime(22).
	if len(f) < 20 {
		return stat{}, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	st := stat{comm: s[open+1 : closing], state: f[0]}
	st.ppid, _ = strconv.Atoi(f[1])
	st.pgrp, _ = strconv.Atoi(f[2])
	st.start, _ = strconv.ParseUint(f[19], 10, 64)
	return st, nil
}

func startTime(pid int) (uint64, error) {
	st, err := readStat(pid)
	return st.start, err
}

// signalIfSame signals pid if it is still the process that started at start (a pid
// may have been reused since it was recorded).
func signalIfSame(pid int, start uint64, sig syscall.Signal) bool {
	st, err := readStat(pid)
	if err != nil || st.start != start || st.state == "Z" {
		return false
	}
	return syscall.Kill(pid, sig) == nil
}

// signalGroupIfSame is signalIfSame for the process's whole group when it leads one
// (the demo starts every process in a group of its own, so that its helpers go too).
func signalGroupIfSame(pid int, start uint64, sig syscall.Signal) bool {
	st, err := readStat(pid)
	if err != nil || st.start != start || st.state == "Z" {
		return false
	}
	if st.pgrp == pid {
		return syscall.Kill(-pid, sig) == nil
	}
	return syscall.Kill(pid, sig) == nil
}

func readPID(path string) (pid int, start uint64, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	if _, err := fmt.Sscanf(string(b), "%d %d", &pid, &start); err != nil {
		return 0, 0, fmt.Errorf("%s: %w", path, err)
	}
	return pid, start, nil
}

// etcdDataDir reads --data-dir from etcd's command line.
func etcdDataDir(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return ""
	}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	sc.Split(func(data []byte, atEOF bool) (int, []byte, error) {
		for i, c := range data {
			if c == 0 {
				return i + 1, data[:i], nil
			}
		}
		if atEOF && len(data) > 0 {
			return len(data), data, nil
		}
		return 0, nil, nil
	})
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "--data-dir="); ok {
			return d
		}
	}
	return ""
}

func writeAtomic(path, content string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(cond func() bool, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(200 * time.Millisecond)
	}
}
