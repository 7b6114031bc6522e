package checkpoint

import (
	"container/heap"
	"encoding/binary"
	"fmt"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/statehash"
)

// SnapshotProof binds an origin snapshot to the checkpoint of its version:
// the signed checkpoint at the snapshot's Version, and, for every key whose
// record in the snapshot is newer than that version (a snapshot holds the
// current record of each key it names, which may have moved on since),
// that key's state at the version. With it, a snapshot is verified by one
// signature and hashing (VerifySnapshot); the Above states need no
// signature, since the hash binds them: a wrong one fails the match.
type SnapshotProof struct {
	Checkpoint *Checkpoint
	// Above are the states at Checkpoint.Version of keys whose snapshot
	// record is newer, sorted by key.
	Above []AtVersion
}

// AtVersion is one key's state as of a checkpoint's version: Element, or
// none (Element nil) for a key that did not exist then (or was a
// tombstone below the floor).
type AtVersion struct {
	Key     string
	Element *statehash.Element
}

// MaxAbove bounds SnapshotProof.Above (a snapshot pass sees the changes of
// a few seconds above its version).
const MaxAbove = 1 << 20

const proofMagic0, proofMagic1, proofFormat = 'D', 'P', 1

// Marshal returns the encoding of p:
//
//	"DP" | format 0x01 | 0x00 | uvarint len + checkpoint encoding |
//	uvarint n | n × (uvarint len + key | flags (bit 0: present, bit 1:
//	tombstone) | [present: version (8 bytes) | digest (32 bytes)])
//
// Above is written sorted by key; a key twice is an error.
func (p *SnapshotProof) Marshal() ([]byte, error) {
	if p.Checkpoint == nil {
		return nil, fmt.Errorf("%w: snapshot proof without a checkpoint", record.ErrInvalid)
	}
	cb, err := p.Checkpoint.Marshal()
	if err != nil {
		return nil, err
	}
	above := append([]AtVersion(nil), p.Above...)
	sort.Slice(above, func(i, j int) bool { return above[i].Key < above[j].Key })
	if len(above) > MaxAbove {
		return nil, fmt.Errorf("%w: snapshot proof of %s: %d states above its version, limit %d", record.ErrInvalid, p.Checkpoint.Namespace, len(above), MaxAbove)
	}
	b := []byte{proofMagic0, proofMagic1, proofFormat, 0}
	b = binary.AppendUvarint(b, uint64(len(cb)))
	b = append(b, cb...)
	b = binary.AppendUvarint(b, uint64(len(above)))
	for i, a := range above {
		if err := record.ValidateKey(p.Checkpoint.Namespace, a.Key); err != nil {
			return nil, err
		}
		if i > 0 && above[i-1].Key == a.Key {
			return nil, fmt.Errorf("%w: snapshot proof of %s: key %q twice", record.ErrInvalid, p.Checkpoint.Namespace, a.Key)
		}
		b = binary.AppendUvarint(b, uint64(len(a.Key)))
		b = append(b, a.Key...)
		if a.Element == nil {
			b = append(b, 0)
			continue
		}
		if a.Element.Key != a.Key || a.Element.Namespace != p.Checkpoint.Namespace {
			return nil, fmt.Errorf("%w: snapshot proof of %s: state of %q names %s/%s", record.ErrInvalid, p.Checkpoint.Namespace, a.Key, a.Element.Namespace, a.Element.Key)
		}
		flags := byte(1)
		if a.Element.Tombstone {
			flags |= 2
		}
		b = append(b, flags)
		b = binary.BigEndian.AppendUint64(b, uint64(a.Element.Version))
		b = append(b, a.Element.Digest[:]...)
	}
	return b, nil
}

// UnmarshalProof decodes SnapshotProof.Marshal's encoding; anything else
// (bad header, truncation, trailing bytes, invalid or unsorted keys, a
// corrupt checkpoint) is an error wrapping ErrCorrupt. It verifies
// nothing.
func UnmarshalProof(b []byte) (*SnapshotProof, error) {
	if len(b) < 4 || b[0] != proofMagic0 || b[1] != proofMagic1 || b[2] != proofFormat || b[3] != 0 {
		return nil, fmt.Errorf("%w: bad snapshot proof header", ErrCorrupt)
	}
	rest := b[4:]
	uv := func(limit uint64) (uint64, error) {
		n, k := binary.Uvarint(rest)
		if k <= 0 || n > limit {
			return 0, fmt.Errorf("%w: bad length in snapshot proof", ErrCorrupt)
		}
		rest = rest[k:]
		return n, nil
	}
	n, err := uv(MaxEncodedSize)
	if err != nil {
		return nil, err
	}
	if uint64(len(rest)) < n {
		return nil, fmt.Errorf("%w: snapshot proof truncated in its checkpoint", ErrCorrupt)
	}
	c, err := Unmarshal(rest[:n])
	if err != nil {
		return nil, err
	}
	rest = rest[n:]
	count, err := uv(MaxAbove)
	if err != nil {
		return nil, err
	}
	p := &SnapshotProof{Checkpoint: c, Above: make([]AtVersion, 0, min(count, uint64(len(rest))))}
	for i := uint64(0); i < count; i++ {
		kl, err := uv(record.MaxKeyLen)
		if err != nil {
			return nil, err
		}
		if uint64(len(rest)) < kl+1 {
			return nil, fmt.Errorf("%w: snapshot proof truncated", ErrCorrupt)
		}
		a := AtVersion{Key: string(rest[:kl])}
		flags := rest[kl]
		rest = rest[kl+1:]
		if err := record.ValidateKey(c.Namespace, a.Key); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
		if len(p.Above) > 0 && p.Above[len(p.Above)-1].Key >= a.Key {
			return nil, fmt.Errorf("%w: snapshot proof keys not sorted and unique at %q", ErrCorrupt, a.Key)
		}
		switch flags {
		case 0:
		case 1, 3:
			if len(rest) < 8+record.SealDigestLen {
				return nil, fmt.Errorf("%w: snapshot proof truncated", ErrCorrupt)
			}
			e := &statehash.Element{Namespace: c.Namespace, Key: a.Key, Version: record.Version(binary.BigEndian.Uint64(rest)), Tombstone: flags&2 != 0}
			copy(e.Digest[:], rest[8:])
			rest = rest[8+record.SealDigestLen:]
			a.Element = e
		default:
			return nil, fmt.Errorf("%w: snapshot proof flags %#x", ErrCorrupt, flags)
		}
		p.Above = append(p.Above, a)
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes after the snapshot proof", ErrCorrupt, len(rest))
	}
	return p, nil
}

// parallelAbove is the record count from which hashing runs on every core.
const parallelAbove = 4096

// hashChunk is how many records a hashing worker takes at a time: small
// enough that a worker slowed by other load leaves the rest to the
// others, large enough that taking one costs nothing next to hashing it
// (about 1 µs a record).
const hashChunk = 1024

// VerifySnapshot checks that snap is whole as of proof's checkpoint: the
// state it holds at the checkpoint's version (its records at or below the
// version, and for each record above it the proof's Above state of its
// key) hashes and counts to the checkpoint's. It verifies no signature:
// the checkpoint must have been verified (Verifier.Verify), and the seals
// of the records above the version checked one by one, since the hash
// does not cover them (Verifier.VerifySnapshot does all three). Records
// are hashed from their values, so a value changed without its seal fails
// too. It returns nil or an error wrapping ErrMismatch (or
// record.ErrInvalid for a proof of another namespace or version).
func VerifySnapshot(snap record.Snapshot, proof *SnapshotProof) error {
	c := proof.Checkpoint
	if c == nil || snap.Namespace != c.Namespace || snap.Version != c.Version {
		return fmt.Errorf("%w: snapshot %s@%s checked against %v", record.ErrInvalid, snap.Namespace, snap.Version, c)
	}
	above := make(map[string]*statehash.Element, len(proof.Above))
	for _, a := range proof.Above {
		above[a.Key] = a.Element
	}
	h, n, err := hashSnapshot(snap.Records, c, above)
	if err != nil {
		return err
	}
	return Match(c, &h, n)
}

// hashSnapshot hashes the state at c.Version that recs and above make:
// each record's value digested (SHA-256) and its element hashed in one
// pass, on every core when recs are many. Workers take chunks of records
// as they go and keep partial hashes, summed at the end (the hash of a
// union is the sum of the hashes).
func hashSnapshot(recs []record.Record, c *Checkpoint, above map[string]*statehash.Element) (statehash.Hash, uint64, error) {
	workers := 1
	if len(recs) >= parallelAbove {
		workers = runtime.GOMAXPROCS(0)
	}
	hs := make([]statehash.Hash, workers)
	ns := make([]uint64, workers)
	errs := make([]error, workers)
	var next atomic.Int64 // the first record no worker has taken
	var failed atomic.Bool
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			h, n := &hs[w], &ns[w]
			for !failed.Load() {
				lo := int(next.Add(hashChunk)) - hashChunk
				if lo >= len(recs) {
					return
				}
				if err := hashRecords(h, n, recs[lo:min(lo+hashChunk, len(recs))], c, above, nil, nil); err != nil {
					errs[w] = err
					failed.Store(true)
					return
				}
			}
		})
	}
	wg.Wait()
	var h statehash.Hash
	var n uint64
	for w := range workers {
		if errs[w] != nil {
			return h, 0, errs[w]
		}
		h.Combine(&hs[w])
		n += ns[w]
	}
	return h, n, nil
}

// hashRecords adds to h (and n) the elements at c.Version of recs. With
// checkSeal, it checks the seal of each record above c.Version (the hash
// covers their states at c.Version, not the records themselves). With
// digests (len(recs) of them), it keeps there the value digest of each
// record at or below c.Version, so that a State can be built from them
// without digesting the values again (SnapshotCheck.State).
func hashRecords(h *statehash.Hash, n *uint64, recs []record.Record, c *Checkpoint, above map[string]*statehash.Element, checkSeal func(record.Record) error, digests [][record.SealDigestLen]byte) error {
	for i := range recs {
		r := &recs[i]
		if r.Namespace != c.Namespace {
			return fmt.Errorf("%w: snapshot of %s holds a record of %s", ErrMismatch, c.Namespace, r.Namespace)
		}
		var e statehash.Element
		if r.Version <= c.Version {
			e = statehash.ElementOf(*r)
			if digests != nil {
				digests[i] = e.Digest
			}
		} else {
			if checkSeal != nil {
				if err := checkSeal(*r); err != nil {
					return err
				}
			}
			at, ok := above[r.Key]
			if !ok {
				return fmt.Errorf("%w: %s/%s@%s is above the checkpoint's version %s and the proof lacks its state there", ErrMismatch, r.Namespace, r.Key, r.Version, c.Version)
			}
			if at == nil {
				continue
			}
			if at.Version > c.Version {
				return fmt.Errorf("%w: the proof's state of %s/%s is above the checkpoint's version", ErrMismatch, r.Namespace, r.Key)
			}
			e = *at
		}
		if e.Tombstone && e.Version < c.TombstoneFloor {
			continue
		}
		h.Add(e)
		*n++
	}
	return nil
}

// VerifySnapshot verifies proof's checkpoint (as Verify, against last),
// the seal of every record of snap above the checkpoint's version, and
// that snap matches the checkpoint (package function VerifySnapshot):
// one signature for the namespace plus one per record newer than the
// checkpoint. Refusals are counted by Reason.
func (v *Verifier) VerifySnapshot(snap record.Snapshot, proof *SnapshotProof, last *Checkpoint) error {
	return v.verifySnapshot(snap, proof, func(c *Checkpoint) error { return v.Verify(c, last) })
}

// verifySnapshot verifies proof's checkpoint by check (which counts its
// own refusals), the seal of every record of snap above the checkpoint's
// version, and that snap matches the checkpoint.
func (v *Verifier) verifySnapshot(snap record.Snapshot, proof *SnapshotProof, check func(*Checkpoint) error) error {
	if proof == nil || proof.Checkpoint == nil {
		return v.refuse(fmt.Errorf("snapshot %s@%s: %w: no checkpoint", snap.Namespace, snap.Version, errUnsignedSnapshot))
	}
	if err := check(proof.Checkpoint); err != nil {
		return err // counted
	}
	for _, r := range snap.Records {
		if r.Version > proof.Checkpoint.Version {
			if err := v.Keys.VerifyRecord(r); err != nil {
				return v.refuse(fmt.Errorf("snapshot %s@%s: %w", snap.Namespace, snap.Version, err))
			}
		}
	}
	if err := VerifySnapshot(snap, proof); err != nil {
		return v.refuse(err)
	}
	return nil
}

// SnapshotCheck verifies a snapshot against its proof while its records
// are still arriving: a node that streams a snapshot (record.
// SnapshotReader) hands each batch of decoded records to Add or Take,
// which hash them on every core while the caller decodes the next, and
// Finish then matches the checkpoint. It checks what Verifier.
// VerifySnapshot (Verifier.StartSnapshot) or Verifier.VerifyBase
// (Verifier.StartBase) checks (the proof's checkpoint, first, in Start…;
// the seal of every record above the checkpoint's version; that the
// records make the checkpoint's state), so a node can hash while it
// decodes instead of after. Nothing it has been given is proven before
// Finish returns nil; after that, State builds the namespace's State from
// the digests the hashing computed, without hashing anything again. Add,
// Take, Finish and State are for one goroutine; Finish must be called
// once, also after an error or when the snapshot is abandoned, to stop the
// workers.
type SnapshotCheck struct {
	v     *Verifier
	c     *Checkpoint
	above map[string]*statehash.Element
	work  chan *checkChunk
	wg    sync.WaitGroup
	// chunks are the records given, in order, with their digests (written
	// by the worker that hashed them; read after wg.Wait).
	chunks []*checkChunk
	// Per worker: partial hash, count and first error. Read after wg.Wait.
	hs     []statehash.Hash
	ns     []uint64
	errs   []error
	failed atomic.Bool
	done   bool
	// matched: Finish returned nil; hash and count are then the
	// checkpoint's.
	matched bool
	hash    statehash.Hash
	count   uint64
}

// checkQueue is how many chunks given to a SnapshotCheck may wait for a
// worker: the check keeps every chunk until State anyway, so a long queue
// costs only its pointers, and the caller's decoding and loading never
// wait for hashing that a busy machine's scheduler holds back (with a
// queue of a few chunks, 1M records warmed 1.5-2.9 times slower than
// unsigned in wall time at a load of 40 on two cores, against 1.4 times
// in CPU); hashing catches up before Finish returns.
const checkQueue = 1024

// checkChunk is up to hashChunk records given to a SnapshotCheck and the
// value digests of those at or below its version.
type checkChunk struct {
	recs    []record.Record
	digests [][record.SealDigestLen]byte
}

// StartSnapshot verifies proof's checkpoint (as Verify, against last)
// for the snapshot of namespace ns at version (its header, as a
// record.SnapshotReader reads it first), and returns the check its
// records are then given to. Refusals are counted by Reason, as
// VerifySnapshot's.
func (v *Verifier) StartSnapshot(ns string, version record.Version, proof *SnapshotProof, last *Checkpoint) (*SnapshotCheck, error) {
	if err := v.checkProofFor(ns, version, proof); err != nil {
		return nil, err
	}
	if err := v.Verify(proof.Checkpoint, last); err != nil {
		return nil, err // counted
	}
	return v.startCheck(proof), nil
}

// StartBase is StartSnapshot for a snapshot loaded as a base (see
// VerifyBase): the proof's checkpoint is checked by VerifyProof against
// floor (an expired one is accepted), the records as StartSnapshot's are.
func (v *Verifier) StartBase(ns string, version record.Version, proof *SnapshotProof, floor record.Version) (*SnapshotCheck, error) {
	if err := v.checkProofFor(ns, version, proof); err != nil {
		return nil, err
	}
	if err := v.VerifyProof(proof.Checkpoint, floor); err != nil {
		return nil, err // counted
	}
	return v.startCheck(proof), nil
}

// checkProofFor checks that proof has a checkpoint, of ns at version.
func (v *Verifier) checkProofFor(ns string, version record.Version, proof *SnapshotProof) error {
	if proof == nil || proof.Checkpoint == nil {
		return v.refuse(fmt.Errorf("snapshot %s@%s: %w: no checkpoint", ns, version, errUnsignedSnapshot))
	}
	if c := proof.Checkpoint; ns != c.Namespace || version != c.Version {
		return v.refuse(fmt.Errorf("%w: snapshot %s@%s checked against %v", record.ErrInvalid, ns, version, c))
	}
	return nil
}

// startCheck starts the hashing workers of a check against proof, whose
// checkpoint has been verified.
func (v *Verifier) startCheck(proof *SnapshotProof) *SnapshotCheck {
	c := proof.Checkpoint
	workers := runtime.GOMAXPROCS(0)
	s := &SnapshotCheck{
		v: v, c: c, above: make(map[string]*statehash.Element, len(proof.Above)),
		work: make(chan *checkChunk, checkQueue),
		hs:   make([]statehash.Hash, workers), ns: make([]uint64, workers), errs: make([]error, workers),
	}
	for _, a := range proof.Above {
		s.above[a.Key] = a.Element
	}
	for w := range workers {
		s.wg.Go(func() {
			for ch := range s.work {
				if s.errs[w] != nil {
					continue // drain: Add must not block on a failed check
				}
				if err := hashRecords(&s.hs[w], &s.ns[w], ch.recs, c, s.above, v.Keys.VerifyRecord, ch.digests); err != nil {
					s.errs[w] = err
					s.failed.Store(true)
				}
			}
		})
	}
	return s
}

// Add hashes recs, the next records of the snapshot, on the check's
// workers; it returns once they have taken them, usually before they are
// hashed. It copies the slice, so the caller may reuse it at once (and
// load the records), but the values the records point to must not change
// until Finish (or State, if called) has returned. After a failure Add
// returns at once.
func (s *SnapshotCheck) Add(recs []record.Record) {
	s.give(recs, true)
}

// Take is Add without the copy: the check keeps recs itself, so the
// caller must not change the slice (nor the values) until Finish (or
// State, if called) has returned. A node that keeps the decoded records
// to load them after the match gives them with Take and holds them once.
func (s *SnapshotCheck) Take(recs []record.Record) {
	s.give(recs, false)
}

func (s *SnapshotCheck) give(recs []record.Record, copyRecs bool) {
	if s.done {
		panic("checkpoint: SnapshotCheck.Add after Finish")
	}
	for len(recs) > 0 && !s.failed.Load() {
		n := min(len(recs), hashChunk)
		ch := &checkChunk{recs: recs[:n:n], digests: make([][record.SealDigestLen]byte, n)}
		if copyRecs {
			ch.recs = append([]record.Record(nil), recs[:n]...)
		}
		s.chunks = append(s.chunks, ch)
		s.work <- ch
		recs = recs[n:]
	}
}

// Finish waits for the records given to Add to be hashed and reports
// whether they are the checkpoint's state: nil, or the error
// VerifySnapshot would give (counted by Reason). It stops the workers.
func (s *SnapshotCheck) Finish() error {
	if s.done {
		return fmt.Errorf("checkpoint: SnapshotCheck.Finish called twice: %w", record.ErrInvalid)
	}
	s.done = true
	close(s.work)
	s.wg.Wait()
	var h statehash.Hash
	var n uint64
	for w := range s.hs {
		if s.errs[w] != nil {
			s.chunks = nil
			return s.v.refuse(fmt.Errorf("snapshot %s@%s: %w", s.c.Namespace, s.c.Version, s.errs[w]))
		}
		h.Combine(&s.hs[w])
		n += s.ns[w]
	}
	if err := Match(s.c, &h, n); err != nil {
		s.chunks = nil
		return s.v.refuse(err)
	}
	s.matched, s.hash, s.count = true, h, n
	return nil
}

// State returns the state of the namespace the matched snapshot makes:
// at exactly the checkpoint's version (each record at or below it, the
// proof's state at it for each record above), its journal forgotten
// there, then the records above applied as changes. The hash at the
// version is the one Finish matched and each key's digest is the one the
// hashing computed, so only the records above the version are digested
// and hashed again. It is an error before Finish returned nil, a second
// time (the check lets go of the records), and for a snapshot that names
// a key twice (which a match rules out unless the records were changed
// after they were given).
func (s *SnapshotCheck) State() (*State, error) {
	if !s.matched {
		return nil, fmt.Errorf("checkpoint: SnapshotCheck.State without a match (before Finish, after a mismatch, or a second time): %w", record.ErrInvalid)
	}
	s.matched = false
	c := s.c
	size := 0
	for _, ch := range s.chunks {
		size += len(ch.recs)
	}
	st := &State{ns: c.Namespace, keys: make(map[string]entry, size), floor: c.TombstoneFloor, from: c.Version}
	var newer []record.Record
	for _, ch := range s.chunks {
		for i := range ch.recs {
			r := &ch.recs[i]
			var e entry
			if r.Version <= c.Version {
				e = entry{version: r.Version, tomb: r.Tombstone, digest: ch.digests[i]}
			} else {
				newer = append(newer, *r)
				at := s.above[r.Key]
				if at == nil {
					continue
				}
				e = entry{version: at.Version, tomb: at.Tombstone, digest: at.Digest}
			}
			if _, dup := st.keys[r.Key]; dup {
				return nil, fmt.Errorf("%w: snapshot %s@%s names %q twice", ErrMismatch, c.Namespace, c.Version, r.Key)
			}
			st.keys[r.Key] = e
			if e.tomb && st.hashed(e) {
				st.tombs = append(st.tombs, tomb{version: e.version, key: r.Key})
			}
		}
	}
	s.chunks = nil
	heap.Init(&st.tombs)
	st.hash, st.count = s.hash, s.count
	for _, r := range newer {
		if _, err := st.Apply(statehash.ElementOf(r)); err != nil {
			return nil, err
		}
	}
	return st, nil
}
