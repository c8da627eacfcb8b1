package simnode

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pvnfs/pvnfs/pkg/volume"
)

// FanoutCallTimeout bounds each NodeStage/Publish/Unpublish/Unstage call of
// MeasureFanout, as kubelet bounds its CSI calls (2 minutes).
const FanoutCallTimeout = 2 * time.Minute

// FanoutResult is what MeasureFanout saw on the node.
type FanoutResult struct {
	// Targets is the number of pods the volume was published to at once; Rounds is
	// how many times it was published to all of them and unpublished again.
	Targets, Rounds int
	// Publish and Unpublish are the latencies of every NodePublishVolume and
	// NodeUnpublishVolume call, as kubelet sees them (its directory work included),
	// in call order: Targets × Rounds each.
	Publish, Unpublish []time.Duration
	// Peak are the node's mounts of the volume's export with every target published
	// (taken in the first round): one NFS-leg mount and Targets bind mounts.
	Peak VolumeMounts
}

// MeasureFanout measures the mount fan-out of one volume on this node: it stages
// the volume, then, rounds times, publishes it to targets pods one after another
// (pod UIDs pod-0, pod-1, ...), as kubelet does for pods starting on the node, and
// unpublishes them all, timing every call; then it unstages the volume. The node's
// mounts of the export are recorded once every target is published. On error the
// volume may be left published; Close removes every mount with the node.
func (n *Node) MeasureFanout(ctx context.Context, vol Volume, targets, rounds int) (FanoutResult, error) {
	res := FanoutResult{Targets: targets, Rounds: rounds}
	if targets < 1 || rounds < 1 {
		return res, fmt.Errorf("simnode: MeasureFanout needs at least one target and one round, got %d and %d", targets, rounds)
	}
	vctx, err := volume.ParseContext(vol.Context)
	if err != nil {
		return res, fmt.Errorf("simnode: volume %s: %w", vol.Handle, err)
	}
	call := func(what string, fn func(context.Context) error) error {
		cctx, cancel := context.WithTimeout(ctx, FanoutCallTimeout)
		defer cancel()
		if err := fn(cctx); err != nil {
			return fmt.Errorf("%s of volume %s on node %s: %w", what, vol.Handle, n.Name(), err)
		}
		return nil
	}
	if err := call("NodeStageVolume", func(ctx context.Context) error { _, err := n.Stage(ctx, vol); return err }); err != nil {
		return res, err
	}
	res.Publish = make([]time.Duration, 0, targets*rounds)
	res.Unpublish = make([]time.Duration, 0, targets*rounds)
	pod := func(t int) string { return fmt.Sprintf("pod-%d", t) }
	for r := range rounds {
		for t := range targets {
			start := time.Now()
			if err := call("NodePublishVolume", func(ctx context.Context) error { _, err := n.Publish(ctx, vol, pod(t), false); return err }); err != nil {
				return res, err
			}
			res.Publish = append(res.Publish, time.Since(start))
		}
		if r == 0 {
			if res.Peak, err = n.VolumeMounts(vctx.Source()); err != nil {
				return res, err
			}
		}
		for t := range targets {
			start := time.Now()
			if err := call("NodeUnpublishVolume", func(ctx context.Context) error { return n.Unpublish(ctx, vol, pod(t)) }); err != nil {
				return res, err
			}
			res.Unpublish = append(res.Unpublish, time.Since(start))
		}
	}
	if err := call("NodeUnstageVolume", func(ctx context.Context) error { return n.Unstage(ctx, vol) }); err != nil {
		return res, err
	}
	left, err := n.VolumeMounts(vctx.Source())
	if err != nil {
		return res, err
	}
	if left.Total() != 0 {
		return res, errors.New("simnode: mounts of the volume left after unpublishing and unstaging: " + fmt.Sprint(left))
	}
	return res, nil
}
