package replica_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/replica"
	"github.com/dataplane/dataplane/record"
)

// meetingLog is a store whose first two ReadLog calls return only once
// both have been made, so two passes read the same changes, each decoding
// its own copy (its own Seal pointers) as a real store does.
type meetingLog struct {
	origin.Store
	calls atomic.Int32
	met   chan struct{}
}

func (m *meetingLog) ReadLog(ctx context.Context, after record.Version, limit int) ([]record.Change, error) {
	switch m.calls.Add(1) {
	case 1:
		select {
		case <-m.met:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	case 2:
		close(m.met)
	}
	return m.Store.ReadLog(ctx, after, limit)
}

// TestReplicatorSeenBySealValue: two passes that read one signed change
// each (two copies, equal but for their Seal pointers) remember it once,
// so it is copied once, not twice.
func TestReplicatorSeenBySealValue(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	primary, rep := open(t), open(t)
	rec := record.Record{Namespace: "routes", Key: "a.example.com", Value: []byte("v"), Version: record.NewClock(nil).Now(),
		Seal: &record.Seal{KeyID: [8]byte{1}, Digest: [32]byte{2}, Sig: [64]byte{3}}}
	if _, err := origin.Publish(ctx, primary, rec); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	now := time.Unix(1000, 0)
	cfg := replica.DefaultConfig()
	cfg.Lag = time.Minute
	cfg.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	r, err := replica.New(&meetingLog{Store: primary, met: make(chan struct{})}, rep, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if n, err := r.Pass(ctx); err != nil || n != 0 {
				t.Errorf("a pass within the lag copied %d: %v", n, err)
			}
		}()
	}
	wg.Wait()
	mu.Lock()
	now = now.Add(2 * cfg.Lag)
	mu.Unlock()
	n, err := r.Pass(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if copied, _ := r.Counts(); n != 1 || copied != 1 {
		t.Fatalf("one signed change read by two passes was copied %d times (counted %d), want once", n, copied)
	}
}
