package mounter

import (
	"os"
	"syscall"
	"testing"

	"github.com/pvnfs/pvnfs/pkg/mounter/mounttest"
)

func TestMain(m *testing.M) { mounttest.Main(m) }

func killPid(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Signal(syscall.SIGKILL)
}
