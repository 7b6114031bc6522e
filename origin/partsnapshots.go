package origin

import (
	"context"

	"github.com/dataplane/dataplane/record"
)

// PartSnapshots gives a store that keeps snapshot objects (SnapshotParts)
// the Store's snapshot methods and SnapshotOpener, all in the default
// layout: WriteSnapshot, ReadSnapshot and OpenSnapshot over Parts. A store
// embeds it and sets Parts to itself.
type PartSnapshots struct {
	Parts SnapshotParts
}

var _ SnapshotOpener = PartSnapshots{}

// PutSnapshot implements Store with WriteSnapshot.
func (p PartSnapshots) PutSnapshot(ctx context.Context, snap record.Snapshot) error {
	return WriteSnapshot(ctx, p.Parts, snap, DefaultLayout())
}

// GetSnapshot implements Store with ReadSnapshot: the main object and every
// part it names are decoded as they stream in.
func (p PartSnapshots) GetSnapshot(ctx context.Context, ns string) (record.Snapshot, error) {
	return ReadSnapshot(ctx, p.Parts, ns)
}

// OpenSnapshot implements SnapshotOpener with OpenSnapshot.
func (p PartSnapshots) OpenSnapshot(ctx context.Context, ns string) (*SnapshotStream, error) {
	return OpenSnapshot(ctx, p.Parts, ns)
}
