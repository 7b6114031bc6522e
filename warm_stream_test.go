package dataplane_test

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/dataplane/dataplane"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/mem"
	"github.com/dataplane/dataplane/record"
)

// trickle is a mem store whose snapshots stream slowly: every read of a
// snapshot object returns at most 256 bytes after a pause, and, when stall
// is set, stops for good after half the object.
type trickle struct {
	*mem.Store
	pause time.Duration
	stall bool
}

func (t *trickle) OpenSnapshot(ctx context.Context, ns string) (*origin.SnapshotStream, error) {
	return origin.OpenSnapshot(ctx, t, ns)
}

func (t *trickle) GetSnapshotPart(ctx context.Context, ns, name string) (io.ReadCloser, error) {
	rc, err := t.Store.GetSnapshotPart(ctx, ns, name)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return nil, err
	}
	return &slowReader{ctx: ctx, b: b, pause: t.pause, stallAt: stallAt(t.stall, len(b))}, nil
}

func stallAt(stall bool, n int) int {
	if stall {
		return n / 2
	}
	return n + 1
}

type slowReader struct {
	ctx     context.Context
	b       []byte
	off     int
	pause   time.Duration
	stallAt int
}

func (r *slowReader) Read(p []byte) (int, error) {
	if r.off >= r.stallAt {
		<-r.ctx.Done()
		return 0, r.ctx.Err()
	}
	select {
	case <-time.After(r.pause):
	case <-r.ctx.Done():
		return 0, r.ctx.Err()
	}
	if r.off >= len(r.b) {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 256)], r.b[r.off:])
	r.off += n
	return n, nil
}

func (r *slowReader) Close() error { return nil }

// TestWarmTimeoutMeasuresProgress: a snapshot that takes several times
// WarmTimeout to stream, but never stops, warms the node; one that stalls
// is abandoned after WarmTimeout without progress.
func TestWarmTimeoutMeasuresProgress(t *testing.T) {
	for _, stall := range []bool{false, true} {
		t.Run(fmt.Sprintf("stall=%v", stall), func(t *testing.T) {
			s := &trickle{Store: mem.New(), pause: 2 * time.Millisecond, stall: stall}
			v := record.MakeVersion(time.Now(), 0)
			snap := record.Snapshot{Namespace: "routes", Version: v}
			for i := range 300 {
				snap.Records = append(snap.Records, record.Record{Namespace: "routes", Key: fmt.Sprintf("h%04d.example.com", i), Value: make([]byte, 200), Version: v})
			}
			if err := s.PutSnapshot(context.Background(), snap); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			n, err := dataplane.Open(context.Background(), dataplane.Config{
				Origin: s, Namespaces: []string{"routes"}, WarmTimeout: 150 * time.Millisecond, Logger: quiet(),
			})
			if err != nil {
				t.Fatal(err)
			}
			defer n.Close()
			took := time.Since(start)
			st := n.Status()
			if stall {
				if n.Ready() {
					t.Fatal("a stalled snapshot warmed the node")
				}
				if l := st.Namespaces[0].Loaded; l == 0 || l >= 300 {
					t.Fatalf("loaded %d records before the stall, want some", l)
				}
				return
			}
			if !n.Ready() || st.Namespaces[0].Loaded != 300 {
				t.Fatalf("ready %v, loaded %d of 300 (took %v)", n.Ready(), st.Namespaces[0].Loaded, took)
			}
			if took < 150*time.Millisecond {
				t.Fatalf("the stream took %v, not longer than WarmTimeout: the test proves nothing", took)
			}
		})
	}
}
