package fleetsim

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane/checkpoint"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/sign"
	"github.com/dataplane/dataplane/statehash"
)

// CheckpointCost is what spreading signed namespace checkpoints by gossip
// push costs a fleet (issue 23): one checkpoint per namespace per second
// pushed from one node, measured beyond the idle traffic (Runner.Idle),
// per node per second of pushing.
type CheckpointCost struct {
	Nodes, Namespaces int
	// Pushed is how many checkpoints were pushed; Bytes is one's size
	// (checkpoint.Marshal).
	Pushed, Bytes int
	// Received counts the checkpoints handed to nodes (Config.OnCheckpoint
	// side: gossip's checkpoints_total{event="received"}); Missing is how
	// many (node, checkpoint) pairs never arrived (a relay may receive
	// one twice: from the pusher and from a co-relay).
	Received, Missing int
	// Per node per second, received, beyond idle: checkpoint messages
	// (each one stream), packets and their bytes (UDP: should be about
	// zero, checkpoints travel by stream), stream bytes, and all bytes.
	MsgsPerSec, PktsPerSec, PktBytesPerSec, StreamBytesPerSec, BytesPerSec float64
	Virtual                                                                time.Duration
}

// CheckpointHeader is the Markdown table header matching Row.
const CheckpointHeader = "| nodes | namespaces | checkpoint bytes | pushed | missing | checkpoint msgs/node/s | packets/node/s | packet bytes/node/s | stream bytes/node/s | bytes/node/s |\n" +
	"|---|---|---|---|---|---|---|---|---|---|"

// Row renders c as a Markdown table row.
func (c CheckpointCost) Row() string {
	return fmt.Sprintf("| %d | %d | %d | %d | %d | %.2f | %.2f | %.0f | %.0f | %.0f |",
		c.Nodes, c.Namespaces, c.Bytes, c.Pushed, c.Missing, c.MsgsPerSec, c.PktsPerSec, c.PktBytesPerSec, c.StreamBytesPerSec, c.BytesPerSec)
}

// Checkpoints pushes, from member 0 (which must be up), one signed
// checkpoint of each of namespaces namespaces every second for secs
// seconds, lets settle pass, and reports the cost. Run Idle first: its
// rate is subtracted.
func (r *Runner) Checkpoints(namespaces, secs int, settle time.Duration) (CheckpointCost, error) {
	_, priv, err := sign.GenerateKey()
	if err != nil {
		return CheckpointCost{}, err
	}
	s, err := sign.NewSigner(priv)
	if err != nil {
		return CheckpointCost{}, err
	}
	pub := r.F.members[0]
	if !pub.up {
		return CheckpointCost{}, fmt.Errorf("member 0 is down")
	}
	c := CheckpointCost{Nodes: r.F.Size(), Namespaces: namespaces}
	m0 := r.mark()
	recv0 := r.checkpointsReceived()
	for sec := range secs {
		now := time.Now()
		for k := range namespaces {
			ns, v := fmt.Sprintf("ns%02d", k), record.MakeVersion(now, 0)
			// A real state hash: its 2 KB of lanes look random, so
			// memberlist's compression cannot shrink them.
			h := statehash.Of(statehash.ElementOf(record.Record{Namespace: ns, Key: fmt.Sprint(sec), Version: v, Value: []byte("v")}))
			cp := &checkpoint.Checkpoint{Namespace: ns, Version: v, Count: 100_000, Hash: h, IssuedAt: now, ExpiresAt: now.Add(5 * time.Minute)}
			if err := cp.Sign(s); err != nil {
				return c, err
			}
			raw, err := cp.Marshal()
			if err != nil {
				return c, err
			}
			c.Bytes = len(raw)
			if err := pub.node.PushCheckpoint(raw); err != nil {
				return c, err
			}
			c.Pushed++
		}
		if sec < secs-1 {
			time.Sleep(time.Second)
		}
	}
	time.Sleep(settle)
	m1 := r.mark()
	c.Virtual = m1.at.Sub(m0.at)
	recv1 := r.checkpointsReceived()
	for i, m := range r.F.members {
		if i == 0 || m.node == nil {
			continue
		}
		got := recv1[i] - recv0[i]
		c.Received += got
		// Relays may get a checkpoint twice (from the pusher and from a
		// co-relay): count what each node lacks, not the sum.
		c.Missing += max(c.Pushed-got, 0)
	}
	nodes := float64(r.up())
	tr := m1.tr.Sub(m0.tr)
	elapsed := c.Virtual.Seconds()
	per := nodes * float64(secs) // node-seconds of pushing
	c.MsgsPerSec = float64(c.Received) / per
	c.PktsPerSec = (float64(tr.PacketsIn) - r.idlePkts*nodes*elapsed) / per
	c.PktBytesPerSec = (float64(tr.BytesIn) - r.idlePktBytes*nodes*elapsed) / per
	idleStream := r.idleBytes - r.idlePktBytes
	c.StreamBytesPerSec = (float64(tr.StreamBytesIn) - idleStream*nodes*elapsed) / per
	c.BytesPerSec = c.PktBytesPerSec + c.StreamBytesPerSec
	return c, nil
}

// checkpointsReceived returns the checkpoints handed to each up node, by
// member index.
func (r *Runner) checkpointsReceived() []int {
	out := make([]int, len(r.F.members))
	for i, m := range r.F.members {
		if m.node != nil {
			out[i] = int(gatherCheckpoints(m.reg) + 0.5)
		}
	}
	return out
}

func gatherCheckpoints(reg *prometheus.Registry) float64 {
	if reg == nil {
		return 0
	}
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "dataplane_gossip_checkpoints_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label(m, "event") == "received" {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
