package origintest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/record"
)

// Outage checks a store across an outage of its server: stop stops the
// server under s, start starts it again with its data. While it is down,
// reads, publishes, log reads and snapshot reads fail with
// origin.ErrUnavailable (within 5 s: s should retry briefly); once it is
// back, the data written before is there and a publish goes through.
func Outage(t *testing.T, s origin.Store, stop, start func() error) {
	t.Helper()
	ctx := func() context.Context {
		c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		t.Cleanup(cancel)
		return c
	}
	r1 := record.Record{Namespace: "routes", Key: "a.example.com", Value: []byte("v1"), Version: 10}
	if _, err := origin.Publish(ctx(), s, r1); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.Get(c, "routes", "a.example.com", 0); !errors.Is(err, origin.ErrUnavailable) {
		t.Fatalf("Get while down: %v, want ErrUnavailable", err)
	}
	r2 := record.Record{Namespace: "routes", Key: "a.example.com", Value: []byte("v2"), Version: 20}
	if _, err := origin.Publish(c, s, r2); !errors.Is(err, origin.ErrUnavailable) {
		t.Fatalf("Publish while down: %v, want ErrUnavailable", err)
	}
	if _, err := s.ReadLog(c, 0, 10); !errors.Is(err, origin.ErrUnavailable) {
		t.Fatalf("ReadLog while down: %v, want ErrUnavailable", err)
	}
	if _, err := s.GetSnapshot(c, "routes"); !errors.Is(err, origin.ErrUnavailable) {
		t.Fatalf("GetSnapshot while down: %v, want ErrUnavailable", err)
	}
	if err := start(); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx(), "routes", "a.example.com", 0)
	if err != nil || string(got.Value) != "v1" {
		t.Fatalf("Get after the outage: %+v, %v; want v1 kept", got, err)
	}
	if _, err := origin.Publish(ctx(), s, r2); err != nil {
		t.Fatalf("Publish after the outage: %v", err)
	}
	log, err := s.ReadLog(ctx(), 0, 10)
	if err != nil || len(log) != 2 || log[1].Version != 20 {
		t.Fatalf("ReadLog after the outage: %+v, %v", log, err)
	}
}
