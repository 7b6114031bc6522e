package gossip

import "github.com/dataplane/dataplane/record"

// DropRecords returns msg, a gossip payload as a Node sends it, without
// the records drop reports true for: nil for a change message (push,
// relay or gossip repair) whose record is dropped, a push/pull digest
// re-encoded without them (its high-water mark kept, so that the receiver
// still learns it lacks something below it), and msg itself when nothing
// is dropped or msg carries no record (acks, refusals, queries,
// checkpoints). It is what a network that loses exactly those records
// delivers, for fault injection (a gossip/netsim Filter): the chaos suite
// drops every tombstone of one namespace on its way to one node. An error
// means msg does not decode.
func DropRecords(msg []byte, drop func(record.Record) bool) ([]byte, error) {
	m, err := decode(msg)
	if err != nil {
		return nil, err
	}
	switch {
	case m.change != nil:
		if drop(m.change.rec) {
			return nil, nil
		}
	case m.digest != nil:
		d := *m.digest
		kept := d.changes[:0:0]
		for _, c := range d.changes {
			if !drop(c.rec) {
				kept = append(kept, c)
			}
		}
		if len(kept) < len(d.changes) {
			d.changes = kept
			return encodeDigest(d, MaxDigestSize), nil
		}
	}
	return msg, nil
}
