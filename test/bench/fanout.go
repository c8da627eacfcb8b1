package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/pvnfs/pvnfs/pkg/volume"
	"github.com/pvnfs/pvnfs/test/simnode"
)

// FanoutRow is one volume published to Targets pods on one node.
type FanoutRow struct {
	Targets, Rounds    int
	Publish, Unpublish Summary
	// NFS, Bind and Other are the node's mounts of the volume's export with every
	// target published: NFS-leg mounts (staging), bind mounts in pods, elsewhere.
	NFS, Bind, Other int
}

// fanoutVolume is the volume the fan-out publishes: what a PV of pvnfs gives
// kubelet.
var fanoutVolume = simnode.Volume{
	Handle:  "pvc-7c1f0b52-3d4e-4f6a-9b8c-1d2e3f4a5b6c",
	Context: volume.Context{Server: "10.96.0.10", Share: volume.ExportPath}.Map(),
}

// runFanout measures the mount fan-out on a fresh simulated node per target count
// (simnode's Node.MeasureFanout, as BenchmarkFanoutPublish does).
func (e *env) runFanout(ctx context.Context, targets []int) ([]FanoutRow, error) {
	var rows []FanoutRow
	for _, t := range targets {
		rounds := (e.opts.fanoutSamples + t - 1) / t
		e.logf("fan-out: %d target(s), %d round(s)", t, rounds)
		row, err := e.fanoutOnce(ctx, t, rounds)
		if err != nil {
			return nil, err
		}
		rows = append(rows, row)
	}
	return rows, nil
}

func (e *env) fanoutOnce(ctx context.Context, targets, rounds int) (_ FanoutRow, err error) {
	dir := filepath.Join(e.work, fmt.Sprintf("fanout-%d", targets))
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	n, err := simnode.Start(sctx, simnode.Options{
		Binary: e.binary, Name: "bench-node", StandInDir: filepath.Join(dir, "exports"), Dir: filepath.Join(dir, "node"),
	})
	if err != nil {
		return FanoutRow{}, err
	}
	defer func() {
		if cerr := n.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
		if err == nil {
			_ = os.RemoveAll(dir)
		}
	}()
	res, err := n.MeasureFanout(ctx, fanoutVolume, targets, rounds)
	if err != nil {
		return FanoutRow{}, fmt.Errorf("%w (plugin log: %s)", err, n.LogPath())
	}
	return FanoutRow{
		Targets: targets, Rounds: rounds,
		Publish: summarize(res.Publish), Unpublish: summarize(res.Unpublish),
		NFS: len(res.Peak.NFS), Bind: len(res.Peak.Pods), Other: len(res.Peak.Other),
	}, nil
}
