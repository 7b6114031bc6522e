package fleetsim

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/dataplane/dataplane/gossip/netsim"
)

// Report is the outcome of one scenario on a fleet.
type Report struct {
	Scenario string
	Nodes    int
	Changes  int
	// Propagation, publish to each node first holding the change, over
	// every (node, change) pair: quantiles and max; Missing pairs never
	// arrived before the scenario ended.
	P50, P99, Max time.Duration
	Missing       int
	// Per node per change, received: gossip-level change messages (push,
	// relay, gossip copies, acks), and transport packets and packet bytes
	// (everything memberlist received by packet, minus the idle rate;
	// push/pull streams are membership upkeep, counted at idle).
	MsgsPerChange, PktsPerChange, BytesPerChange float64
	// GossipSent is gossip repair messages sent per change, fleet-wide.
	GossipSent float64
	// Per node per second at idle, received: packets, and bytes of
	// packets and streams.
	IdlePktsPerSec, IdleBytesPerSec float64
	// Heal is, for a partition, the time from healing to every node
	// holding every change; for a restart, the time from the restart to
	// every node seeing every restarted node (SeeMissing: observers that
	// never did).
	Heal       time.Duration
	SeeMissing int
	// Membership during the scenario.
	Suspicions, FalseSuspicions, FalseFailures int
	FalseSuspicionsPerHour                     float64 // per node
	// Virtual is the scenario's virtual duration; CPU the process CPU
	// time it took; Wall the real time it took on this machine (which
	// depends on its load, unlike every other figure).
	Virtual, CPU, Wall time.Duration
	// LateByPath counts the deliveries that took LateAfter or longer by
	// the path that finally delivered them (push, relay, retry, gossip
	// repair, log); Late explains the slowest of them, one line each:
	// every push, relay and retry sent to the member, and what its
	// region's relays got. Repairs counts why changes went to gossip
	// repair (a target given up on, no target, no retries).
	LateByPath map[string]int
	Late       []string
	Repairs    map[string]int
}

// maxLateLines bounds Report.Late.
const maxLateLines = 10

// Diagnosis renders the late deliveries and the gossip repairs, or "" if
// there were none.
func (r Report) Diagnosis() string {
	var b strings.Builder
	if len(r.LateByPath) > 0 {
		fmt.Fprintf(&b, "%s: deliveries of %s or more, by the path that delivered them: %s\n", r.Scenario, LateAfter, counts(r.LateByPath))
		for _, l := range r.Late {
			b.WriteString("  " + l + "\n")
		}
	}
	if len(r.Repairs) > 0 {
		fmt.Fprintf(&b, "%s: gossip repairs by reason: %s\n", r.Scenario, counts(r.Repairs))
	}
	return b.String()
}

func counts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

// diagnose fills r's late deliveries and repairs, for changes published
// at or after since.
func (r *Runner) diagnose(rep *Report, since time.Time) {
	byPath, lines := r.F.lateDeliveries(since, maxLateLines)
	if len(byPath) > 0 {
		rep.LateByPath, rep.Late = byPath, lines
	}
	if rp := r.F.repairs(since); len(rp) > 0 {
		rep.Repairs = rp
	}
}

// CPUPerSecond is CPU seconds per virtual second for the whole fleet.
func (r Report) CPUPerSecond() float64 {
	if r.Virtual <= 0 {
		return 0
	}
	return r.CPU.Seconds() / r.Virtual.Seconds()
}

// Header is the Markdown table header matching Row.
const Header = "| scenario | nodes | changes | p50 ms | p99 ms | max ms | missing | msgs/node/change | pkts/node/change | bytes/node/change | heal/see s | suspicions (false) | false susp./node/h | CPU s/virtual s | wall s |\n" +
	"|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"

// Row renders r as a Markdown table row.
func (r Report) Row() string {
	heal := "-"
	if r.Heal > 0 || r.SeeMissing > 0 {
		heal = fmt.Sprintf("%.1f", r.Heal.Seconds())
		if r.SeeMissing > 0 {
			heal += fmt.Sprintf(" (%d never)", r.SeeMissing)
		}
	}
	if r.Scenario == "idle" {
		return fmt.Sprintf("| idle | %d | - | - | - | - | - | %.2f pkts/s | %.0f B/s | - | - | %d (%d) | %.2f | %.2f | %.0f |",
			r.Nodes, r.IdlePktsPerSec, r.IdleBytesPerSec, r.Suspicions, r.FalseSuspicions, r.FalseSuspicionsPerHour, r.CPUPerSecond(), r.Wall.Seconds())
	}
	return fmt.Sprintf("| %s | %d | %d | %d | %d | %d | %d | %.1f | %.1f | %.0f | %s | %d (%d) | %.2f | %.2f | %.0f |",
		r.Scenario, r.Nodes, r.Changes, r.P50.Milliseconds(), r.P99.Milliseconds(), r.Max.Milliseconds(), r.Missing,
		r.MsgsPerChange, r.PktsPerChange, r.BytesPerChange, heal, r.Suspicions, r.FalseSuspicions, r.FalseSuspicionsPerHour, r.CPUPerSecond(), r.Wall.Seconds())
}

// Runner runs scenarios one after another on one fleet, so that they share
// one seed and one start.
type Runner struct {
	F *Fleet
	// Changes per scenario, published Spacing apart from random up nodes;
	// Settle is how long after the last publish a scenario keeps running
	// (push retries and gossip repair finish in it, and are counted).
	Changes int
	Spacing time.Duration
	Settle  time.Duration
	// Value is the published value (inline).
	Value []byte
	// IdleFor is how long the idle scenario measures (its rate is
	// subtracted from the others' traffic).
	IdleFor time.Duration

	// OnReport, if set, is called with each report as soon as its
	// scenario ends (long runs show progress).
	OnReport func(Report)

	idlePkts, idleBytes float64 // per node per second, from Idle
	idlePktBytes        float64 // packet bytes only
}

// DefaultRunner returns a runner with 20 changes 1 s apart, 20 s settle
// and 30 s idle.
func DefaultRunner(f *Fleet) *Runner {
	return &Runner{F: f, Changes: 20, Spacing: time.Second, Settle: 20 * time.Second, IdleFor: 30 * time.Second, Value: []byte(`{"deployment":"d-123","upstreams":["http://10.0.0.1:8080"]}`)}
}

type mark struct {
	at   time.Time
	wall time.Time
	cpu  time.Duration
	tr   netsim.Traffic
	g    GossipCounts
	memb Membership
}

func (r *Runner) mark() mark {
	return mark{at: time.Now(), wall: Wall(), cpu: CPU(), tr: r.F.Traffic(), g: r.F.Gossip(), memb: r.F.Membership()}
}

func (r *Runner) up() int {
	k := 0
	for _, m := range r.F.members {
		if m.up {
			k++
		}
	}
	return k
}

func (r *Runner) finish(name string, m0 mark, changes int) Report {
	m1 := r.mark()
	rep := Report{Scenario: name, Nodes: r.F.Size(), Changes: changes, Virtual: m1.at.Sub(m0.at), CPU: m1.cpu - m0.cpu, Wall: m1.wall.Sub(m0.wall)}
	nodes := float64(r.up())
	if changes > 0 {
		d := r.F.Delivery(m0.at)
		rep.P50, rep.P99, rep.Missing = d.Quantile(0.5), d.Quantile(0.99), d.Missing
		if len(d.Latencies) > 0 {
			rep.Max = d.Latencies[len(d.Latencies)-1]
		}
		tr := m1.tr.Sub(m0.tr)
		secs := rep.Virtual.Seconds()
		per := nodes * float64(changes)
		rep.PktsPerChange = (float64(tr.PacketsIn) - r.idlePkts*nodes*secs) / per
		rep.BytesPerChange = (float64(tr.BytesIn) - r.idlePktBytes*nodes*secs) / per
		g := m1.g.Sub(m0.g)
		rep.MsgsPerChange = g.ChangeMessages() / per
		rep.GossipSent = g.Sent["gossip"] / float64(changes)
		r.diagnose(&rep, m0.at)
	}
	rep.Suspicions = m1.memb.Suspicions - m0.memb.Suspicions
	rep.FalseSuspicions = m1.memb.FalseSuspicions - m0.memb.FalseSuspicions
	rep.FalseFailures = m1.memb.FalseFailures - m0.memb.FalseFailures
	if h := rep.Virtual.Hours(); h > 0 {
		rep.FalseSuspicionsPerHour = float64(rep.FalseSuspicions) / nodes / h
	}
	return rep
}

// Idle measures traffic with no changes for d.
func (r *Runner) Idle(d time.Duration) Report {
	m0 := r.mark()
	time.Sleep(d)
	rep := r.finish("idle", m0, 0)
	tr := r.mark().tr.Sub(m0.tr)
	nodes, secs := float64(r.up()), rep.Virtual.Seconds()
	r.idlePkts = float64(tr.PacketsIn) / nodes / secs
	r.idleBytes = float64(tr.BytesIn+tr.StreamBytesIn) / nodes / secs
	r.idlePktBytes = float64(tr.BytesIn) / nodes / secs
	rep.IdlePktsPerSec, rep.IdleBytesPerSec = r.idlePkts, r.idleBytes
	return rep
}

func (r *Runner) publishSeries() error {
	for i := range r.Changes {
		if err := r.F.Publish(r.F.RandomUp(), r.Value); err != nil {
			return err
		}
		if i < r.Changes-1 {
			time.Sleep(r.Spacing)
		}
	}
	return nil
}

// waitDelivered waits until every up node holds every change since t0, or
// until limit.
func (r *Runner) waitDelivered(t0 time.Time, limit time.Duration) (time.Time, bool) {
	deadline := time.Now().Add(limit)
	for !r.F.AllDelivered(t0) {
		if time.Now().After(deadline) {
			return time.Now(), false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Now(), true
}

// Steady publishes Changes changes with every link losing loss of its
// packets, then settles.
func (r *Runner) Steady(loss float64) (Report, error) {
	r.F.Net.SetLoss(loss)
	defer r.F.Net.SetLoss(0)
	m0 := r.mark()
	if err := r.publishSeries(); err != nil {
		return Report{}, err
	}
	time.Sleep(r.Settle)
	return r.finish(fmt.Sprintf("steady %g%% loss", loss*100), m0, r.Changes), nil
}

// Partition cuts region `region` from every other region (and from the
// origin's log) for d while changes are published on both sides, heals,
// and measures the time from healing until every node holds every change
// (up to limit).
func (r *Runner) Partition(region string, d, limit time.Duration) (Report, error) {
	m0 := r.mark()
	for _, o := range r.F.regions {
		if o != region {
			r.F.Net.Cut(region, o)
		}
	}
	saved := r.Spacing
	r.Spacing = d / time.Duration(max(r.Changes, 1))
	err := r.publishSeries()
	r.Spacing = saved
	if err != nil {
		return Report{}, err
	}
	time.Sleep(d - time.Since(m0.at))
	for _, o := range r.F.regions {
		r.F.Heal(region, o)
	}
	healed := time.Now()
	done, _ := r.waitDelivered(m0.at, limit)
	time.Sleep(r.Settle)
	rep := r.finish("partition "+region+" "+d.String(), m0, r.Changes)
	rep.Heal = done.Sub(healed)
	return rep, nil
}

// Restart crashes frac of the nodes (random, never member 0), keeps them
// down for down, restarts them, publishes Changes changes, and measures the
// time from restart until every node has seen every restarted node rejoin
// (up to limit).
func (r *Runner) Restart(frac float64, down, limit time.Duration) (Report, error) {
	m0 := r.mark()
	k := int(frac * float64(r.F.Size()))
	var idx []int
	picked := map[int]bool{0: true}
	for len(idx) < k {
		i := r.F.rng.IntN(r.F.Size())
		if !picked[i] {
			picked[i] = true
			idx = append(idx, i)
		}
	}
	for _, i := range idx {
		r.F.Stop(i)
	}
	time.Sleep(down)
	restarted := time.Now()
	for _, i := range idx {
		if err := r.F.Restart(i); err != nil {
			return Report{}, fmt.Errorf("restart %d: %w", i, err)
		}
	}
	pub := time.Now()
	if err := r.publishSeries(); err != nil {
		return Report{}, err
	}
	deadline := restarted.Add(limit)
	var last time.Time
	missing := 0
	for {
		last, missing = time.Time{}, 0
		for _, i := range idx {
			l, m := r.F.SeenAt(i, restarted)
			missing += m
			if l.After(last) {
				last = l
			}
		}
		if missing == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(r.Settle)
	rep := r.finish(fmt.Sprintf("restart %g%%", frac*100), m0, r.Changes)
	// Propagation figures: changes published after the restart only.
	d := r.F.Delivery(pub)
	rep.P50, rep.P99, rep.Missing = d.Quantile(0.5), d.Quantile(0.99), d.Missing
	rep.LateByPath, rep.Late, rep.Repairs = nil, nil, nil
	r.diagnose(&rep, pub)
	if len(d.Latencies) > 0 {
		rep.Max = d.Latencies[len(d.Latencies)-1]
	}
	rep.Heal, rep.SeeMissing = max(last.Sub(restarted), 0), missing
	return rep, nil
}

// Scenarios lists the scenario names Run accepts.
var Scenarios = []string{"idle", "steady", "loss", "loss30", "partition", "restart"}

// Run runs the named scenarios (a subset of Scenarios, in that order) and
// returns one report each. idle always runs first, as the others subtract
// its traffic.
func (r *Runner) Run(names []string) ([]Report, error) {
	want := map[string]bool{"idle": true}
	for _, n := range names {
		want[strings.TrimSpace(n)] = true
	}
	var out []Report
	add := func(rep Report) {
		out = append(out, rep)
		if r.OnReport != nil {
			r.OnReport(rep)
		}
	}
	add(r.Idle(r.IdleFor))
	steps := []struct {
		name string
		run  func() (Report, error)
	}{
		{"steady", func() (Report, error) { return r.Steady(0) }},
		{"loss", func() (Report, error) { return r.Steady(0.1) }},
		{"loss30", func() (Report, error) { return r.Steady(0.3) }},
		{"partition", func() (Report, error) {
			return r.Partition(r.F.regions[len(r.F.regions)-1], 30*time.Second, 2*time.Minute)
		}},
		{"restart", func() (Report, error) { return r.Restart(0.1, 3*time.Minute, 3*time.Minute) }},
	}
	for _, s := range steps {
		if !want[s.name] {
			continue
		}
		rep, err := s.run()
		if err != nil {
			return out, fmt.Errorf("%s: %w", s.name, err)
		}
		add(rep)
	}
	return out, nil
}
