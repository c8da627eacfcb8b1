package kerneltest

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pvnfs/pvnfs/pkg/nfsserver/command"
	"github.com/pvnfs/pvnfs/pkg/nfsserver/command/commandtest"
	"github.com/pvnfs/pvnfs/pkg/nfsserver/kernel"
	"github.com/pvnfs/pvnfs/pkg/serverconfig"
)

// Operations are the NFSv4 operation counts of StatsFile, by operation number.
func Operations() map[int]uint64 {
	return map[int]uint64{3: 2, 4: 1, 9: 30, 10: 5, 15: 11, 18: 3, 22: 60, 24: 1, 25: 7, 26: 2,
		38: 9, 42: 1, 43: 1, 53: 58, 58: 1}
}

// StatsFile is the /proc/net/rpc/nfsd the environment starts with: 4096 bytes
// read, 8192 written, 8 threads, 120 COMPOUNDs, and Operations.
func StatsFile() string {
	ops := make([]string, 76)
	for i := range ops {
		ops[i] = "0"
	}
	for op, n := range Operations() {
		ops[op] = strconv.FormatUint(n, 10)
	}
	return `rc 0 20 100
fh 0 0 0 0 0
io 4096 8192
th 8 0 0.000 0.000 0.000 0.000 0.000 0.000 0.000 0.000 0.000 0.000
net 121 0 121 3
rpc 121 0 0 0 0
proc4 2 1 120
proc4ops 76 ` + strings.Join(ops, " ") + "\n"
}

// Env is a fake kernel for one test.
type Env struct {
	// Root holds everything; VolumeRoot is the fake backend volume below it.
	Root, VolumeRoot string
	// Options point the kernel engine at Root.
	Options kernel.Options
	// Runner is the fake runner; tests may add to its OnRun and OnStart.
	Runner *commandtest.Fake
	// Config is a valid server configuration over VolumeRoot.
	Config serverconfig.Config

	// NfsdModule false makes the nfsd filesystem unknown to the kernel: mounting
	// it fails, as on a node without the nfsd module.
	NfsdModule bool
	// TrackClients false keeps nfsdcld from ever opening the kernel's pipe: nfsd
	// started without client tracking, however often its threads start.
	TrackClients bool
	// LoadExports false makes exportfs -r succeed without writing etab.
	LoadExports bool
}

// New lays out the environment. The nfsd filesystem and rpc_pipefs start
// unmounted; the fake mount mounts them.
func New(t *testing.T) *Env {
	t.Helper()
	root := t.TempDir()
	e := &Env{Root: root, VolumeRoot: filepath.Join(root, "vol"), Runner: commandtest.New(1000),
		NfsdModule: true, TrackClients: true, LoadExports: true}
	o := kernel.DefaultOptions()
	o.ProcDir = filepath.Join(root, "proc")
	o.NfsdDir = filepath.Join(root, "nfsd")
	o.RPCPipefsDir = filepath.Join(root, "pipefs")
	o.ExportsFile = filepath.Join(root, "etc", "exports")
	o.NFSStateDir = filepath.Join(root, "var", "lib", "nfs")
	o.NFSRootDir = filepath.Join(root, "nfsroot")
	o.NFSConfFile = filepath.Join(root, "etc", "nfs.conf.d", "pvnfs.conf")
	o.CommandTimeout = 2 * time.Second
	o.HelperTimeout = 300 * time.Millisecond
	o.TrackingTimeout = 100 * time.Millisecond
	e.Options = o
	for _, d := range []string{e.VolumeRoot + "/lost+found", o.ProcDir + "/net/rpc", o.NFSStateDir} {
		must(t, os.MkdirAll(d, 0o755))
	}
	must(t, os.WriteFile(filepath.Join(o.ProcDir, "net", "rpc", "nfsd"), []byte(StatsFile()), 0o644))
	must(t, os.WriteFile(filepath.Join(o.NFSStateDir, "etab"), nil, 0o644))

	c := serverconfig.Default()
	c.VolumeID = "pvc-0a1b2c3d"
	c.VolumeRoot = e.VolumeRoot
	e.Config = c

	e.Runner.OnRun["mount"] = e.mount
	e.Runner.OnRun["exportfs"] = e.exportfs
	e.Runner.OnStart["nfsdcld"] = e.startNfsdcld
	e.Runner.OnStart["rpc.mountd"] = e.startMountd
	return e
}

// NfsdFile returns the content of a file of the fake nfsd filesystem.
func (e *Env) NfsdFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e.Options.NfsdDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Etab returns exportfs's table.
func (e *Env) Etab(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e.Options.NFSStateDir, "etab"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// MountNfsd mounts the fake nfsd filesystem, as an earlier container would have.
func (e *Env) MountNfsd(t *testing.T, threads int, ports string) {
	t.Helper()
	e.populateNfsd()
	must(t, os.WriteFile(filepath.Join(e.Options.NfsdDir, "threads"), []byte(fmt.Sprintf("%d\n", threads)), 0o644))
	must(t, os.WriteFile(filepath.Join(e.Options.NfsdDir, "portlist"), []byte(ports), 0o644))
}

func (e *Env) mount(c command.Cmd) ([]byte, error) {
	switch {
	case len(c.Args) == 3 && c.Args[0] == "--bind":
		// The pseudo-root's bind of the export: the fake records it as a symlink.
		if err := os.Remove(c.Args[2]); err != nil {
			return nil, err
		}
		return nil, os.Symlink(c.Args[1], c.Args[2])
	case len(c.Args) == 6 && c.Args[1] == "tmpfs":
		return nil, nil
	case len(c.Args) != 4 || c.Args[0] != "-t":
		return nil, fmt.Errorf("unexpected mount %v", c.Args)
	}
	filesystems := "nodev\tsysfs\nnodev\trpc_pipefs\n"
	if e.NfsdModule {
		filesystems += "nodev\tnfsd\n"
	}
	if err := os.WriteFile(filepath.Join(e.Options.ProcDir, "filesystems"), []byte(filesystems), 0o644); err != nil {
		return nil, err
	}
	switch c.Args[1] {
	case "nfsd":
		if !e.NfsdModule {
			return []byte("mount: /proc/fs/nfsd: unknown filesystem type 'nfsd'."), fmt.Errorf("exit status 32")
		}
		e.populateNfsd()
	case "rpc_pipefs":
		if err := os.MkdirAll(filepath.Join(c.Args[3], "nfsd"), 0o755); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unexpected filesystem %s", c.Args[1])
	}
	return nil, nil
}

func (e *Env) populateNfsd() {
	d := e.Options.NfsdDir
	_ = os.MkdirAll(filepath.Join(d, "clients", "3"), 0o755)
	_ = os.MkdirAll(filepath.Join(d, "clients", "4"), 0o755)
	for name, content := range map[string]string{
		"threads": "0\n", "versions": "+3 +4 +4.1 +4.2\n", "nfsv4leasetime": "90\n",
		"nfsv4gracetime": "90\n", "portlist": "",
	} {
		_ = os.WriteFile(filepath.Join(d, name), []byte(content), 0o644)
	}
}

// exportfs plays exportfs -r (exports file to etab, with the defaults exportfs
// adds) and exportfs -ua (empty etab).
func (e *Env) exportfs(c command.Cmd) ([]byte, error) {
	etab := filepath.Join(e.Options.NFSStateDir, "etab")
	switch strings.Join(c.Args, " ") {
	case "-r":
		if !e.LoadExports {
			return nil, nil
		}
		b, err := os.ReadFile(e.Options.ExportsFile)
		if err != nil {
			return []byte("exportfs: can't open " + e.Options.ExportsFile), fmt.Errorf("exit status 1")
		}
		var out bytes.Buffer
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "" {
				continue
			}
			path, client, _ := strings.Cut(line, " ")
			client = strings.Replace(client, ")", ",wdelay,hide,nocrossmnt,secure_locks,no_all_squash)", 1)
			fmt.Fprintf(&out, "%s\t%s\n", path, client)
		}
		return nil, os.WriteFile(etab, out.Bytes(), 0o644)
	case "-ua":
		return nil, os.WriteFile(etab, nil, 0o644)
	}
	return nil, fmt.Errorf("unexpected exportfs %v", c.Args)
}

func (e *Env) startNfsdcld(c command.Cmd, p *commandtest.Proc) error {
	storage := argAfter(c.Args, "--storagedir")
	links := map[string]string{"3": filepath.Join(storage, "main.sqlite"), "5": "anon_inode:inotify"}
	if e.TrackClients {
		links["4"] = filepath.Join(argAfter(c.Args, "--pipefsdir"), "nfsd", "cld")
	}
	return e.fds(p.Pid(), links)
}

func (e *Env) startMountd(_ command.Cmd, p *commandtest.Proc) error {
	return e.fds(p.Pid(), map[string]string{
		"5": "/proc/" + strconv.Itoa(p.Pid()) + "/net/rpc/nfsd.export/channel",
	})
}

func (e *Env) fds(pid int, links map[string]string) error {
	dir := filepath.Join(e.Options.ProcDir, strconv.Itoa(pid), "fd")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for fd, target := range links {
		if err := os.Symlink(target, filepath.Join(dir, fd)); err != nil {
			return err
		}
	}
	return nil
}

func argAfter(args []string, flag string) string {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
