package origin

// CheckpointPartsReader is an optional capability of a Store that keeps no
// snapshot parts of its own but reads its origin's through another
// protocol: a cache tier (package httporigin), whose nodes serve the
// parts signed checkpoints need (package checkpoint: the latest checkpoint
// and snapshot proofs of each namespace).
type CheckpointPartsReader interface {
	// CheckpointParts returns a read-only view of the origin's checkpoint
	// parts: GetSnapshotPart reads them; writes fail.
	CheckpointParts() SnapshotParts
}

// CheckpointPartsOf returns where checkpoints of s are read: s itself when
// it keeps snapshot parts (every store of this module but the cache
// tier), the view of a CheckpointPartsReader, or nil.
func CheckpointPartsOf(s Store) SnapshotParts {
	switch p := s.(type) {
	case SnapshotParts:
		return p
	case CheckpointPartsReader:
		return p.CheckpointParts()
	}
	return nil
}
