package demo

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// helperEnv makes the test binary act as a demo that claims a state directory,
// starts a process and records it (see runHelper).
const helperEnv = "PVNFS_DEMO_STATE_HELPER"

func TestMain(m *testing.M) {
	if dir := os.Getenv(helperEnv); dir != "" {
		os.Exit(runHelper(dir))
	}
	os.Exit(m.Run())
}

// runHelper plays a demo: it claims dir, starts `sleep` in a process group of its
// own (as the demo starts its processes), records it and a fake etcd directory,
// says "ready <sleep pid>", and on SIGTERM stops the sleep and releases dir.
func runHelper(dir string) int {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	st, err := Claim(dir, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	child := exec.Command("sleep", "infinity")
	child.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := child.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	st.Record()
	etcd, err := os.MkdirTemp("/dev/shm", "pvnfs-etcd-statetest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := os.WriteFile(filepath.Join(dir, etcdName), []byte(etcd+"\n"), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("ready %d %s\n", child.Process.Pid, etcd)
	<-sigs
	_ = child.Process.Kill()
	_ = child.Wait()
	_ = os.RemoveAll(etcd)
	if err := st.Release(false); err != nil {
		return 1
	}
	return 0
}

// startHelper runs the helper demo on dir and returns it once it is ready, with the
// pid of the process it started and its etcd directory.
func startHelper(t *testing.T, dir string) (*exec.Cmd, int, string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("helper demo: %v", err)
	}
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != "ready" {
		t.Fatalf("helper demo said %q", line)
	}
	pid, _ := strconv.Atoi(f[1])
	return cmd, pid, f[2]
}

func alive(pid int) bool {
	st, err := readStat(pid)
	return err == nil && st.state != "Z"
}

func TestClaimRefusesASecondDemo(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	st, err := Claim(dir, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Claim(dir, os.Stderr); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("second Claim = %v, want a demo already running", err)
	}
	if err := st.Release(false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Release left %s (%v)", dir, err)
	}
	st, err = Claim(dir, os.Stderr)
	if err != nil {
		t.Fatalf("Claim after Release: %v", err)
	}
	_ = st.Release(false)
}

func TestStopEndsARunningDemo(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	cmd, child, etcd := startHelper(t, dir)
	var out bytes.Buffer
	if err := Stop(dir, &out, 30*time.Second); err != nil {
		t.Fatalf("Stop: %v\n%s", err, out.String())
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("the demo did not end cleanly on Stop's SIGTERM: %v", err)
	}
	if alive(child) {
		t.Errorf("process %d the demo started is still running", child)
	}
	for _, p := range []string{dir, etcd} {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s left after Stop (%v)", p, err)
		}
	}
	t.Logf("Stop said:\n%s", out.String())
}

func TestStopCleansUpAfterAKilledDemo(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	cmd, child, etcd := startHelper(t, dir)
	t.Cleanup(func() { _ = syscall.Kill(-child, syscall.SIGKILL); _ = os.RemoveAll(etcd) })
	// SIGKILL: the demo cannot clean up; its process and etcd directory stay.
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if !alive(child) {
		t.Fatalf("the process the killed demo started is gone already; nothing to test")
	}
	var out bytes.Buffer
	if err := Stop(dir, &out, 30*time.Second); err != nil {
		t.Fatalf("Stop: %v\n%s", err, out.String())
	}
	if !waitFor(func() bool { return !alive(child) }, 10*time.Second) {
		t.Errorf("process %d left by the killed demo is still running", child)
	}
	for _, p := range []string{dir, etcd} {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s left after Stop (%v)", p, err)
		}
	}
	if !strings.Contains(out.String(), "sleep") || !strings.Contains(out.String(), etcd) {
		t.Errorf("Stop did not say what it removed:\n%s", out.String())
	}
}

func TestStopWithoutDemo(t *testing.T) {
	var out bytes.Buffer
	if err := Stop(filepath.Join(t.TempDir(), "none"), &out, time.Second); err != nil || !strings.Contains(out.String(), "nothing to stop") {
		t.Errorf("Stop of nothing = %v, %q", err, out.String())
	}
}
