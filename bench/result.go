package bench

import (
	"math"
	"slices"
	"time"
)

// Result is what one option measured.
type Result struct {
	// Option is the configuration measured.
	Option Option `json:"option"`
	// Skipped, when set, says why the option did not run (its origin
	// server was unavailable); nothing else is filled in then.
	Skipped string `json:"skipped,omitempty"`
	// Error is a failure that ended the option's run early.
	Error string `json:"error,omitempty"`

	// ReadLatency is the latency of reads at the sentinels (Node.Get) in
	// the steady phase; ReadLatencyAll over every measured phase.
	ReadLatency    Quantiles `json:"read_latency_ms"`
	ReadLatencyAll Quantiles `json:"read_latency_all_ms"`
	// Propagation is the time from the start of a publish to the last
	// sentinel that held the key holding the new version, for writes of
	// the steady phase; PropagationAll for every write.
	Propagation    Quantiles `json:"propagation_ms"`
	PropagationAll Quantiles `json:"propagation_all_ms"`
	// Served is the time from the start of a publish to the last sentinel
	// that held the key serving the new version fresh (steady-phase
	// writes): a holder told of it without its value is read by the
	// prober every 250 ms until it serves it. Unserved counts the writes
	// some holder never served so before the end. With per-region replicas
	// this includes the replication lag for values not carried inline.
	Served   Quantiles `json:"served_ms"`
	Unserved int       `json:"unserved"`
	// FreshBehind counts the prober's looks at a holder that had been
	// told of a newer version yet served an older one as fresh (steady
	// phase). It must be 0: a lagging replica's older answer is never
	// served as fresh.
	FreshBehind int `json:"fresh_behind"`
	// ReplicaCopied and ReplicaLost are the replicators' changes copied and
	// copy attempts lost (retried), with Config.ReplicaLag.
	ReplicaCopied int64 `json:"replica_copied,omitempty"`
	ReplicaLost   int64 `json:"replica_lost,omitempty"`
	// Unpropagated counts steady-phase writes that some sentinel holding
	// the key had still not picked up at the end of the run (TTL-only
	// options refresh a key only when it is read again).
	Unpropagated int `json:"unpropagated"`
	// PropagationSamples are the steady-phase propagation times (ms), for
	// the CDF chart.
	PropagationSamples []float64 `json:"propagation_samples_ms,omitempty"`

	// SteadySeconds is the length of the steady phase.
	SteadySeconds float64 `json:"steady_seconds"`
	// SteadyWrites are the writes made in the steady phase.
	SteadyWrites int64 `json:"steady_writes"`
	// Origin counts the steady phase's origin requests by client:
	// "sentinel", "cachenode", "publisher"; "tier" counts sentinel requests
	// to the cache nodes.
	Origin map[string]OriginCounts `json:"origin_steady"`
	// OriginTotal counts every origin request of the run by client.
	OriginTotal map[string]OriginCounts `json:"origin_total"`
	// OriginReadsPerSec are origin reads per second by sentinels and cache
	// nodes in the steady phase; ReadsPerWrite divides them by the writes.
	OriginReadsPerSec float64 `json:"origin_reads_per_sec"`
	ReadsPerWrite     float64 `json:"origin_reads_per_write"`
	// MonthlyCost is the estimated origin request cost of 30 days at the
	// steady phase's rates (reads and writes), in USD.
	MonthlyCost     float64 `json:"monthly_cost_usd"`
	MonthlyReadCost float64 `json:"monthly_read_cost_usd"`
	// Timeline is the origin reads (sentinels and cache nodes) in each
	// second of the run; Phases mark when each phase began.
	Timeline []int64      `json:"origin_reads_timeline"`
	Phases   []PhaseStart `json:"phases"`

	// Phase holds read and write outcomes per phase.
	Phase map[string]*PhaseStats `json:"phase"`

	// Converge is the convergence check after the settle period.
	Converge Convergence `json:"convergence"`
	// SettleSeconds is how long the option waited after the last write
	// before the check: its convergence bound.
	SettleSeconds float64 `json:"settle_seconds"`
	// Duration is the option's wall time, start-up included; SetupSeconds,
	// CheckSeconds and TeardownSeconds are its parts outside the phases.
	Duration        float64 `json:"duration_seconds"`
	SetupSeconds    float64 `json:"setup_seconds"`
	CheckSeconds    float64 `json:"check_seconds"`
	TeardownSeconds float64 `json:"teardown_seconds"`
}

// PhaseStart marks the start of a phase, in seconds since the option's
// start.
type PhaseStart struct {
	Name string  `json:"name"`
	At   float64 `json:"at_seconds"`
}

// PhaseStats are the outcomes of one phase's reads and writes.
type PhaseStats struct {
	// Reads are the reads made; Served those that returned a value.
	Reads  int64 `json:"reads"`
	Served int64 `json:"served"`
	// CachedReads are reads of a key the sentinel held before the read;
	// CachedServed those that returned a value (stale allowed).
	CachedReads  int64 `json:"cached_reads"`
	CachedServed int64 `json:"cached_served"`
	// StaleMarked are reads answered with a value marked stale.
	StaleMarked int64 `json:"stale_marked"`
	// Behind are reads that returned an older version than the latest
	// write completed before the read began.
	Behind int64 `json:"behind"`
	// Rerouted are reads aimed at a restarting sentinel and not made (a
	// load balancer sends them to another).
	Rerouted int64 `json:"rerouted"`
	// Writes and FailedWrites count the publisher's writes.
	Writes       int64 `json:"writes"`
	FailedWrites int64 `json:"failed_writes"`
}

// CachedAvailability is CachedServed / CachedReads (1 with no reads).
func (p *PhaseStats) CachedAvailability() float64 {
	if p == nil || p.CachedReads == 0 {
		return 1
	}
	return float64(p.CachedServed) / float64(p.CachedReads)
}

// Availability is Served / Reads (1 with no reads).
func (p *PhaseStats) Availability() float64 {
	if p == nil || p.Reads == 0 {
		return 1
	}
	return float64(p.Served) / float64(p.Reads)
}

// Convergence is the check that every sentinel serves the origin's latest
// version of every key it holds, once the option's convergence bound has
// passed after the last write.
type Convergence struct {
	// Checked are the (sentinel, key) pairs read.
	Checked int `json:"checked"`
	// Revalidated are reads answered with an older version marked stale
	// (a stale-while-revalidate answer) whose refresh then brought the
	// latest version: not stale reads, but counted.
	Revalidated int `json:"revalidated"`
	// Stale are reads that returned an older version than the origin's
	// latest without marking it stale, or still did after revalidation:
	// must be 0.
	Stale int `json:"stale"`
	// Examples name a few stale pairs.
	Examples []string `json:"examples,omitempty"`
}

// Quantiles summarises a sample, in milliseconds.
type Quantiles struct {
	N    int     `json:"n"`
	P50  float64 `json:"p50"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99_9"`
	Max  float64 `json:"max"`
}

func quantiles(xs []float64) Quantiles {
	if len(xs) == 0 {
		return Quantiles{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	q := func(p float64) float64 {
		i := int(math.Ceil(float64(len(s))*p)) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	return Quantiles{N: len(s), P50: q(0.5), P99: q(0.99), P999: q(0.999), Max: s[len(s)-1]}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// secondsPerMonth is 30 days.
const secondsPerMonth = 30 * 24 * 3600

// cost prices the steady-phase origin requests of r for a month.
func (r *Result) cost(p Prices) {
	if r.SteadySeconds <= 0 {
		return
	}
	perMonth := secondsPerMonth / r.SteadySeconds
	var reads, writes float64
	for role, c := range r.Origin {
		if role == "tier" {
			continue // requests to the cache nodes, not to the origin
		}
		switch r.Option.Origin {
		case S3:
			// A log read is a LIST (PUT price) plus a GET of the horizon.
			gets := float64(c.Gets + c.NotModified + c.NotFound + c.SnapshotReads + c.LogReads)
			reads += gets*p.S3GetPer1000/1000 + float64(c.LogReads)*p.S3PutPer1000/1000
			writes += float64(c.Writes+c.LogAppends+c.SnapshotWrites) * p.S3PutPer1000 / 1000
		case DynamoDB:
			ru := float64(c.ReadUnits4K)
			if p.DynamoEventual {
				ru /= 2
			}
			reads += ru * p.DynamoRRUPerMillion / 1e6
			writes += float64(c.WriteUnits1K) * p.DynamoWRUPerMillion / 1e6
		}
	}
	r.MonthlyReadCost = reads * perMonth
	r.MonthlyCost = (reads + writes) * perMonth
}
