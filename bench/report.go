package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// WriteMarkdown writes the report's table and notes in Markdown.
func (r *Report) WriteMarkdown(w io.Writer) error {
	c := r.Config
	var b strings.Builder
	fmt.Fprintf(&b, "| option | read p50 / p99 / p99.9 (ms) | propagation p50 / p99 / max (ms) | not propagated | reads behind latest | origin reads/s | origin reads per write | origin $/month (of which reads) | served in outage | partition | gossip loss | restarts | stale after convergence |\n")
	fmt.Fprintf(&b, "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, res := range r.Results {
		if res.Skipped != "" {
			fmt.Fprintf(&b, "| %s | **SKIPPED: %s** |||||||||||| |\n", res.Option.Name, mdEscape(res.Skipped))
			continue
		}
		if res.Error != "" && res.SteadySeconds == 0 {
			fmt.Fprintf(&b, "| %s | **FAILED: %s** |||||||||||| |\n", res.Option.Name, mdEscape(res.Error))
			continue
		}
		steady := res.Phase[phaseSteady]
		behind := 0.0
		if steady != nil && steady.Reads > 0 {
			behind = 100 * float64(steady.Behind) / float64(steady.Reads)
		}
		stale := fmt.Sprintf("%d of %d", res.Converge.Stale, res.Converge.Checked)
		if res.Error != "" {
			stale += " (" + mdEscape(res.Error) + ")"
		}
		fmt.Fprintf(&b, "| %s | %s / %s / %s | %s / %s / %s | %d | %.2f%% | %.1f | %.1f | $%s ($%s) | %s | %s | %s | %s | %s |\n",
			res.Option.Name,
			fmtMs(res.ReadLatency.P50), fmtMs(res.ReadLatency.P99), fmtMs(res.ReadLatency.P999),
			fmtMs(res.Propagation.P50), fmtMs(res.Propagation.P99), fmtMs(res.Propagation.Max),
			res.Unpropagated, behind,
			res.OriginReadsPerSec, res.ReadsPerWrite, fmtMoney(res.MonthlyCost), fmtMoney(res.MonthlyReadCost),
			avail(res.Phase[phaseOutage]), avail(res.Phase[phasePartition]), avail(res.Phase[phaseLoss]), avail(res.Phase[phaseRestart]),
			stale)
	}
	fmt.Fprintf(&b, "\nRun: preset %s, seed %d, %d regions (origin in %s) × %d sentinels", c.Preset, c.Seed, c.Regions, regionNames[0], c.Sentinels)
	fmt.Fprintf(&b, " (+ %d cache nodes per region for the tier options), one-way delay between regions %s to %s (+ up to %s jitter), %s in a region. ",
		c.CacheNodes, c.MinDelay, c.MaxDelay, c.Jitter, c.LANDelay)
	fmt.Fprintf(&b, "Links: %s. ", fmtLinks(r.Links))
	fmt.Fprintf(&b, "Workload: %d keys, Zipf s=%.2g reads at %.0f/s over the fleet, writes at %.3g/s (Zipf keys, value sizes %s bytes:weight). ",
		c.Keys, c.ZipfS, c.ReadRate, c.WriteRate, FormatSizes(c.ValueSizes))
	fmt.Fprintf(&b, "TTL options: fresh %s then served stale while revalidating (SWR); gossip options: fresh %s, change log read every %s. ",
		c.TTL, c.GossipTTL, c.LogInterval)
	fmt.Fprintf(&b, "Phases: warm-up %s (TTL options: at least two TTLs + 1 s, past the first refresh wave), steady %s, then faults of %s each with %s between: origin outage (every origin request refused), "+
		"partition of %s from the other regions (gossip and HTTP), %.0f%% gossip packet loss, restart of one sentinel per region; then settle. ",
		c.Warmup, c.Steady, c.Fault, c.Recover, regionNames[c.Regions-1], 100*c.GossipLoss)
	fmt.Fprintf(&b, "Machine: %s; run took %.0f s.\n", r.Machine, r.Seconds)
	fmt.Fprintf(&b, "\nColumns: read latency at the sentinel API (Node.Get) in the steady phase. Propagation: publish start → the last sentinel that held the key holds the new version, or has been told of it by gossip or the change log (an invalidation, for values too large to travel inline: the old version is then never served as fresh again and the next read fetches the new one); polled every %s with Node.Peek, which never reads the origin, and Node.Watch; steady-phase writes. \"Not propagated\": writes some holder had still not picked up when the run ended (a TTL-only sentinel refreshes a key only when it is read again after its TTL, so rarely read keys stay behind). "+
		"\"Reads behind latest\": steady-phase reads returning an older version than the latest completed write. Origin reads: GETs, 304s, not-founds, change-log and snapshot reads by sentinels and cache nodes in the steady phase (publisher requests are priced but not counted as reads); per write: divided by the steady phase's writes. "+
		"$/month: origin request cost of 30 days at the steady rates (reads and writes), S3 at $%g per 1,000 GET and $%g per 1,000 PUT/LIST, DynamoDB at $%g per million RRU (%s) and $%g per million WRU. "+
		"Fault columns: share of reads of keys the sentinel already held that returned a value (stale allowed). Stale after convergence: (sentinel, key) pairs whose read, once the option's convergence bound has passed after the last write, returned an older version than the origin's without marking it stale, or still did after the revalidation it started.\n",
		probeInterval, c.Prices.S3GetPer1000, c.Prices.S3PutPer1000, c.Prices.DynamoRRUPerMillion, consistency(c.Prices), c.Prices.DynamoWRUPerMillion)
	fmt.Fprintf(&b, "\nOrigin requests in the steady phase, per second, by kind (sentinels and cache nodes; \"via tier\" are sentinel requests to the cache nodes; publisher: its reads and writes):\n\n")
	fmt.Fprintf(&b, "| option | GET | not modified | not found | change-log reads | snapshot reads | via tier | publisher reads | publisher writes + log appends |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, res := range r.Results {
		if res.SteadySeconds <= 0 {
			continue
		}
		var o OriginCounts
		o.add(res.Origin["sentinel"])
		o.add(res.Origin["cachenode"])
		t, p := res.Origin["tier"], res.Origin["publisher"]
		per := func(n int64) string { return fmt.Sprintf("%.1f", float64(n)/res.SteadySeconds) }
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", res.Option.Name,
			per(o.Gets), per(o.NotModified), per(o.NotFound), per(o.LogReads), per(o.SnapshotReads),
			per(t.Reads()), per(p.Reads()), per(p.Writes+p.LogAppends+p.SnapshotWrites))
	}
	fmt.Fprintf(&b, "\nServing: publish start → the last sentinel that held the key serves the new version fresh (Node.Peek; a holder told of it without its value is read by the prober every %s, as a reader would, until it serves it); steady-phase writes.", servingProbeEvery)
	if c.replicas() {
		fmt.Fprintf(&b, " Regions after %s read their own replica, fed from the primary %s behind with %.0f%% of copies lost and retried every %s (origin/replica); the gossip options settle %s behind the log.", regionNames[0], c.ReplicaLag, 100*c.ReplicaLoss, replicaInterval, c.logSettle())
	}
	fmt.Fprintf(&b, " \"Served fresh while behind\": looks that found a holder told of the new version serving an older one as fresh (must be 0).")
	fmt.Fprintf(&b, "\n\n| option | serving p50 / p99 / max (ms) | not served | served fresh while behind | replica changes copied (copies lost) |\n|---|---|---|---|---|\n")
	for _, res := range r.Results {
		if res.SteadySeconds <= 0 {
			continue
		}
		fmt.Fprintf(&b, "| %s | %s / %s / %s | %d | %d | %d (%d) |\n", res.Option.Name,
			fmtMs(res.Served.P50), fmtMs(res.Served.P99), fmtMs(res.Served.Max), res.Unserved, res.FreshBehind, res.ReplicaCopied, res.ReplicaLost)
	}
	var missing []string
	for k, v := range r.Backends {
		if strings.HasPrefix(v, "UNAVAILABLE") {
			missing = append(missing, fmt.Sprintf("%s: %s", k, v))
		}
	}
	sort.Strings(missing)
	for _, m := range missing {
		fmt.Fprintf(&b, "\n**WARNING: origin server %s — its options were skipped.**\n", m)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func consistency(p Prices) string {
	if p.DynamoEventual {
		return "eventually consistent reads: 0.5 RRU per 4 KB"
	}
	return "strongly consistent reads, as the store makes them: 1 RRU per 4 KB"
}

func fmtLinks(l map[string]float64) string {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %.0f ms", k, l[k])
	}
	return strings.Join(parts, ", ")
}

func avail(p *PhaseStats) string {
	if p == nil || p.CachedReads == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f%%", 100*p.CachedAvailability())
}

func fmtMs(v float64) string {
	switch {
	case v == 0:
		return "–"
	case v < 0.001:
		return "<0.001"
	case v < 0.1:
		return fmt.Sprintf("%.3f", v)
	case v < 10:
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

func fmtMoney(v float64) string {
	if v < 10 {
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

func mdEscape(s string) string {
	s = firstLine(s)
	return strings.ReplaceAll(s, "|", "\\|")
}

// WriteJSON writes the report as indented JSON to path.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("bench: encode report: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("bench: write report: %w", err)
	}
	return nil
}

// ReadReport reads a report written by WriteJSON, to render its table and
// charts again.
func ReadReport(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("bench: read report: %w", err)
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("bench: report %s: %w", path, err)
	}
	return &r, nil
}
