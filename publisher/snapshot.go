package publisher

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/record"
)

// Config.Timing.SnapshotLag keeps a snapshot's Version this far behind the
// wall clock. A version is assigned before its write reaches the origin and the change log,
// so the newest log entries may still have older siblings in flight; a
// snapshot that claimed to cover them would let a cold node, which follows
// the log only after the snapshot's Version, miss those. Records changed more
// recently are still included: a snapshot may hold records newer than its
// Version, and readers apply the log after it by version, idempotently.

// logPage is how many changes one ReadLog call asks for.
const logPage = 1000

// Snapshot brings the snapshot of namespace ns in the origin up to date with
// the change log and returns its Version and the records this pass wrote.
//
// In a store that supports origin.SnapshotParts, a pass reads only the
// snapshot's main object (its version), the change log after it and the
// current record of every key of ns the log names, and appends those
// records as a delta (origin.AppendSnapshot): its cost grows with the
// changes, not with the namespace. In other stores it reads the previous
// snapshot whole, updates it and writes it back. Tombstones are kept, so a
// cold node loading the snapshot learns of deletes too, until they are older
// than Config.TombstoneHorizon; then the next rewrite of the namespace's
// base leaves them out.
//
// Namespaces other than ns found in the change log are remembered, and Run
// snapshots them from its next pass on.
func (p *Publisher) Snapshot(ctx context.Context, ns string) (record.Snapshot, error) {
	if err := record.ValidateNamespace(ns); err != nil {
		return record.Snapshot{}, err
	}
	p.snapMu.Lock()
	defer p.snapMu.Unlock()
	start := time.Now()
	var snap record.Snapshot
	var others []string
	var err error
	if p.ckpt != nil {
		p.ckpt.beforeSnapshot(ctx, ns)
	}
	ps, parts := p.store.(origin.SnapshotParts)
	if parts {
		snap, others, err = p.appendDelta(ctx, ps, ns)
	} else {
		snap, others, err = p.build(ctx, ns)
		if err == nil {
			snap.Records = origin.DropTombstones(snap.Records, p.tombstoneCutoff())
			if p.ckpt != nil {
				p.ckpt.proveSnapshot(ctx, ns, snap.Version, snap.Records, true)
			}
			err = p.store.PutSnapshot(ctx, snap)
		}
	}
	if err != nil {
		p.m.snapshotErrors.Inc()
		return record.Snapshot{}, fmt.Errorf("snapshot %s: %w", ns, err)
	}
	p.m.snapshotDuration.Observe(time.Since(start).Seconds())
	p.m.snapshotRecords.Add(float64(len(snap.Records)))
	p.mu.Lock()
	p.seen[ns] = true
	for _, o := range others {
		p.seen[o] = true
	}
	p.mu.Unlock()
	return snap, nil
}

// tombstoneCutoff is the version below which tombstones leave the
// snapshots (0: never).
func (p *Publisher) tombstoneCutoff() record.Version {
	if p.cfg.TombstoneHorizon <= 0 {
		return 0
	}
	return record.MakeVersion(time.Now().Add(-p.cfg.TombstoneHorizon), 0)
}

// appendDelta is Snapshot's pass in a store with origin.SnapshotParts.
func (p *Publisher) appendDelta(ctx context.Context, ps origin.SnapshotParts, ns string) (record.Snapshot, []string, error) {
	prev, err := origin.SnapshotVersion(ctx, ps, ns)
	if err != nil && !errors.Is(err, origin.ErrNotFound) {
		return record.Snapshot{}, nil, fmt.Errorf("read previous snapshot: %w", err)
	}
	var recheck []string
	if p.ckpt != nil {
		recheck = p.ckpt.aboveKeys(ns)
	}
	delta, others, err := p.changed(ctx, ns, prev, recheck)
	if err != nil {
		return record.Snapshot{}, nil, err
	}
	if p.ckpt != nil {
		// The proof goes first, so a reader who finds the snapshot finds it.
		p.ckpt.proveSnapshot(ctx, ns, delta.Version, delta.Records, false)
	}
	if err := origin.AppendSnapshot(ctx, ps, delta, p.tombstoneCutoff(), p.cfg.layout); err != nil {
		return record.Snapshot{}, nil, err
	}
	return delta, others, nil
}

// SnapshotAll snapshots every namespace the publisher knows (Config.Namespaces,
// those it wrote, those found in the change log) and then, when
// Config.Timing.LogRetention is set and every one succeeded, trims the change log
// below the oldest snapshot's version minus the retention. It returns the
// joined errors of the namespaces that failed; the others are still written.
func (p *Publisher) SnapshotAll(ctx context.Context) error {
	known := p.namespaces()
	var errs []error
	var oldest record.Version
	for i, ns := range known {
		snap, err := p.Snapshot(ctx, ns)
		if err != nil {
			p.log.Error("snapshot failed", "namespace", ns, "err", err)
			errs = append(errs, err)
			continue
		}
		if i == 0 || snap.Version < oldest {
			oldest = snap.Version
		}
	}
	if len(errs) > 0 && p.cfg.Timing.LogRetention > 0 {
		// Never silently: a namespace that keeps failing stops the log
		// from being trimmed, and the log grows until someone looks.
		p.m.trimSkipped.Inc()
		p.log.Error("change log not trimmed: some namespaces have no up-to-date snapshot",
			"failed", len(errs), "namespaces", len(known))
	}
	if len(errs) > 0 || len(known) == 0 || p.cfg.Timing.LogRetention <= 0 {
		return errors.Join(errs...)
	}
	if len(p.namespaces()) != len(known) {
		// The log named namespaces that have no snapshot yet: keep their
		// changes until the next pass has snapshotted them.
		return nil
	}
	keep := record.Version(uint64(p.cfg.Timing.LogRetention.Milliseconds()) << 16)
	if oldest <= keep {
		return nil
	}
	if err := p.store.TrimLog(ctx, oldest-keep); err != nil {
		p.log.Error("trim change log failed", "before", (oldest - keep).String(), "err", err)
		return fmt.Errorf("trim change log: %w", err)
	}
	return nil
}

// namespaces returns the namespaces the publisher maintains snapshots of,
// sorted.
func (p *Publisher) namespaces() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, 0, len(p.seen))
	for ns := range p.seen {
		out = append(out, ns)
	}
	sort.Strings(out)
	return out
}

// Run snapshots every known namespace at once and then every
// Config.SnapshotInterval until ctx is done, when it returns nil, and beside
// that runs the crash repair (RunRepair), so a publisher process started
// with Run always finishes what a crashed predecessor left half-written,
// and, with Config.IssueCheckpoints, issues checkpoints (RunCheckpoints),
// else, with a Signer, checks that the change log keeps the writes it
// acknowledges (RunAckCheck; RunCheckpoints does too). Failures are
// logged and counted and retried on the next tick.
func (p *Publisher) Run(ctx context.Context) error {
	repairDone := make(chan struct{})
	go func() {
		defer close(repairDone)
		_ = p.RunRepair(ctx) // logged inside
	}()
	defer func() { <-repairDone }()
	if p.ckpt != nil || p.cfg.Signer != nil {
		checkDone := make(chan struct{})
		go func() {
			defer close(checkDone)
			if p.ckpt != nil {
				_ = p.RunCheckpoints(ctx) // logged inside; checks acknowledged writes too
			} else {
				_ = p.RunAckCheck(ctx) // logged inside
			}
		}()
		defer func() { <-checkDone }()
	}
	t := time.NewTicker(p.cfg.SnapshotInterval)
	defer t.Stop()
	for {
		_ = p.SnapshotAll(ctx) // logged inside
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// build computes the current state of ns from its snapshot and the change
// log after it, without writing anything. It also returns the other
// namespaces the log named.
func (p *Publisher) build(ctx context.Context, ns string) (record.Snapshot, []string, error) {
	prev, err := p.store.GetSnapshot(ctx, ns)
	switch {
	case err == nil:
	case errors.Is(err, origin.ErrNotFound):
		prev = record.Snapshot{Namespace: ns}
	default:
		return record.Snapshot{}, nil, fmt.Errorf("read previous snapshot: %w", err)
	}
	recs := make(map[string]record.Record, len(prev.Records))
	var recheck []string
	for _, r := range prev.Records {
		recs[r.Key] = r
		if r.Version > prev.Version {
			recheck = append(recheck, r.Key)
		}
	}
	delta, others, err := p.changed(ctx, ns, prev.Version, recheck)
	if err != nil {
		return record.Snapshot{}, nil, err
	}
	for _, r := range delta.Records {
		if old, ok := recs[r.Key]; !ok || r.Version > old.Version {
			recs[r.Key] = r
		}
	}
	snap := record.Snapshot{Namespace: ns, Version: delta.Version, Records: make([]record.Record, 0, len(recs))}
	for _, r := range recs {
		snap.Records = append(snap.Records, r)
	}
	sort.Slice(snap.Records, func(i, j int) bool { return snap.Records[i].Key < snap.Records[j].Key })
	return snap, others, nil
}

// changed reads the change log after version prev and returns, as a delta
// snapshot, the current record of every key of ns it names (and of every
// key of recheck, keys whose record in the snapshot may be newer than its
// version), with the version the snapshot covers once the delta is
// applied. It also returns the other namespaces the log named.
//
// The snapshot's proof is built from the change log (the issuer's state),
// its records from the store, and the store can hold a version the log
// never named: a write whose log append failed (left for Repair), or one
// that landed between this pass's log read and its record read. Such a
// record is kept, but the version stops short of it, so that it is carried
// as newer than the snapshot's version, with its key's state there taken
// from the log (checkpoint.SnapshotProof.Above): every snapshot then proves
// only what the log names and verifies against its own proof. A key whose
// stored record cannot be taken (corrupt, missing, not signed by a trusted
// key) keeps its previous state, and the version stops short of the first
// change the log names of it, so readers still take it from the log once
// the record is rewritten. Log entries not signed by a trusted key are
// left out there, as the issuer leaves them out of the state it signs.
func (p *Publisher) changed(ctx context.Context, ns string, prev record.Version, recheck []string) (record.Snapshot, []string, error) {
	changes, err := p.changesSince(ctx, prev)
	if err != nil {
		return record.Snapshot{}, nil, fmt.Errorf("read change log after %s: %w", prev, err)
	}
	top := prev
	type span struct{ first, last record.Version } // of a key's changes in the log
	changed := make(map[string]span)
	others := make(map[string]bool)
	for _, c := range changes {
		if c.Version > top {
			top = c.Version
		}
		if c.Namespace != ns {
			others[c.Namespace] = true
			continue
		}
		s, ok := changed[c.Key]
		if !ok || c.Version < s.first {
			s.first = c.Version
		}
		s.last = max(s.last, c.Version)
		changed[c.Key] = s
	}
	rechecked := make(map[string]bool, len(recheck))
	for _, k := range recheck {
		rechecked[k] = true
		if _, ok := changed[k]; !ok {
			changed[k] = span{}
		}
	}
	if cutoff := record.MakeVersion(time.Now().Add(-p.cfg.Timing.SnapshotLag), 0); top > cutoff {
		top = cutoff
	}
	// trusted is a key's span over the log entries signed by a trusted
	// key, the ones the issuer counts: checked only for a key whose
	// record disagrees with the log (signatures cost), so that a forged
	// entry cannot hold the snapshot's version back.
	trusted := func(key string) span {
		var t span
		for _, c := range changes {
			if c.Namespace != ns || c.Key != key || p.distrusts(c) != nil {
				continue
			}
			if t.first == 0 || c.Version < t.first {
				t.first = c.Version
			}
			t.last = max(t.last, c.Version)
		}
		return t
	}
	delta := record.Snapshot{Namespace: ns, Records: make([]record.Record, 0, len(changed))}
	for key, s := range changed {
		cur, err := p.store.Get(ctx, ns, key, 0)
		forged := err == nil && p.distrustsRecord(cur) != nil
		if s.last > 0 && (err != nil || forged || cur.Version < s.last) {
			if s = trusted(key); s.last == 0 && !rechecked[key] {
				continue // only forged entries name it: unchanged since prev
			}
		}
		switch {
		case forged:
			// A bucket writer's forgery: nodes refuse it, and the
			// snapshot, which they verify by its proof's hash rather
			// than record by record, must not carry it to them. The key
			// keeps its previous state.
			top = keepPrevious(top, s.first)
		case err == nil:
			delta.Records = append(delta.Records, cur)
			if cur.Version != s.last && cur.Version-1 < top {
				// The log does not name this version (as the key's
				// newest): carry it above the snapshot's version.
				top = cur.Version - 1
			}
		case errors.Is(err, origin.ErrNotFound):
			// Logged but never stored: nothing to include.
			top = keepPrevious(top, s.first)
		case errors.Is(err, record.ErrCorrupt):
			p.log.Error("snapshot: stored record is corrupt; keeping its previous state",
				"namespace", ns, "key", key, "err", err)
			top = keepPrevious(top, s.first)
		default:
			return record.Snapshot{}, nil, fmt.Errorf("read %s/%s: %w", ns, key, err)
		}
	}
	delta.Version = max(prev, top)
	sort.Slice(delta.Records, func(i, j int) bool { return delta.Records[i].Key < delta.Records[j].Key })
	var names []string
	for o := range others {
		if record.ValidateNamespace(o) == nil {
			names = append(names, o)
		}
	}
	sort.Strings(names)
	return delta, names, nil
}

// keepPrevious lowers top below first, the oldest change the log names
// of a key whose previous state the snapshot keeps (0: none named).
func keepPrevious(top, first record.Version) record.Version {
	if first > 0 && first-1 < top {
		return first - 1
	}
	return top
}

// changesSince returns every change the log holds after `after`, paging
// through ReadLog. Changes that share the last version of a full page are
// read again on the next page, so a page boundary never drops one.
func (p *Publisher) changesSince(ctx context.Context, after record.Version) ([]record.Change, error) {
	var out []record.Change
	for {
		page, err := p.store.ReadLog(ctx, after, logPage)
		if err != nil {
			return nil, err
		}
		out = append(out, page...)
		if len(page) < logPage {
			return out, nil
		}
		last := page[len(page)-1].Version
		if page[0].Version == last {
			return nil, fmt.Errorf("change log holds more than %d changes at version %s", logPage, last)
		}
		after = last - 1
	}
}
