package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/pvnfs/pvnfs/test/vmlab"
	"github.com/pvnfs/pvnfs/test/vmlab/guest"
)

// DataPathResult is the data-path phase: the VM lab's real kernel serving and
// mounting NFS, each target's medians and their ratios to the backend's.
type DataPathResult struct {
	KernelRelease string
	Tree          guest.TreeShape
	Reps          int
	Rows          []DataPathRow
}

// DataPathRow is one target's medians and its ratios to the backend's.
type DataPathRow struct {
	Name                                           string
	Extract, Walk, Read, Write, Restart            time.Duration
	ExtractRatio, WalkRatio, ReadRatio, WriteRatio float64
	HasRestart                                     bool
}

// runDataPath boots the VM lab's guest with the data-path benchmark
// (test/vmlab/guest, TestBenchDataPath) and summarizes what it measured.
func (e *env) runDataPath(ctx context.Context, root string) (*DataPathResult, error) {
	e.logf("data path: building the VM lab's guest if missing, then booting it (about 15 minutes)")
	g, err := vmlab.Install(ctx, root)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(e.work, "vmlab")
	if err := vmlab.Standard.Build(ctx, root, filepath.Join(dir, "bin")); err != nil {
		return nil, err
	}
	res, err := g.Boot(ctx, root, vmlab.Run{
		Dir:     dir,
		Args:    []string{"-test.v", "-test.run=^TestBenchDataPath$", "-test.timeout=40m"},
		Timeout: 45 * time.Minute,
	})
	if err != nil {
		return nil, err
	}
	if res.RC != 0 {
		return nil, fmt.Errorf("the guest's benchmark failed (exit %d):\n%s", res.RC, res.Output)
	}
	b, err := os.ReadFile(filepath.Join(dir, "out", guest.DataPathFile))
	if err != nil {
		return nil, err
	}
	var dp guest.DataPath
	if err := json.Unmarshal(b, &dp); err != nil {
		return nil, err
	}
	return summarizeDataPath(dp), nil
}

// summarizeDataPath takes each sample list's median and divides each target's by
// the first target's (the backend itself).
func summarizeDataPath(dp guest.DataPath) *DataPathResult {
	r := &DataPathResult{KernelRelease: dp.KernelRelease, Tree: dp.Tree}
	var base DataPathRow
	for i, t := range dp.Targets {
		row := DataPathRow{Name: t.Name, Extract: median(t.Extract), Walk: median(t.Walk), Read: median(t.Read),
			Write: median(t.Write), Restart: median(t.RestartToWritable), HasRestart: len(t.RestartToWritable) > 0}
		if i == 0 {
			base = row
			r.Reps = len(t.Extract)
		}
		row.ExtractRatio, row.WalkRatio = ratio(row.Extract, base.Extract), ratio(row.Walk, base.Walk)
		row.ReadRatio, row.WriteRatio = ratio(row.Read, base.Read), ratio(row.Write, base.Write)
		r.Rows = append(r.Rows, row)
	}
	return r
}
