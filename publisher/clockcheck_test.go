package publisher_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dataplane/dataplane/internal/testserver"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/awsconn"
	"github.com/dataplane/dataplane/origin/dynamodb"
	"github.com/dataplane/dataplane/origin/s3"
	"github.com/dataplane/dataplane/publisher"
	"github.com/dataplane/dataplane/record"
)

// clockStores opens a fresh real S3-compatible and DynamoDB-compatible
// store: both tell their time in their answers' Date header.
func clockStores(t *testing.T) map[string]origin.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s3srv := testserver.StartS3(t)
	s3s, err := s3.New(ctx, s3.Config{
		Bucket: "clock", UsePathStyle: true,
		Conn: awsconn.Conn{
			Endpoint: s3srv.Endpoint, Region: s3srv.Region, AccessKey: s3srv.AccessKey, SecretKey: s3srv.SecretKey,
			RetryBaseDelay: 10 * time.Millisecond, RetryMaxDelay: 100 * time.Millisecond,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s3s.CreateBucket(ctx); err != nil {
		t.Fatal(err)
	}
	dsrv := testserver.StartDynamo(t)
	ds, err := dynamodb.New(ctx, dynamodb.Config{
		Table: "clock",
		Conn:  awsconn.Conn{Endpoint: dsrv.Endpoint, Region: dsrv.Region, AccessKey: dsrv.AccessKey, SecretKey: dsrv.SecretKey},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := ds.CreateTable(ctx); err != nil {
		t.Fatal(err)
	}
	return map[string]origin.Store{"s3": s3s, "dynamodb": ds}
}

// TestClockOffsetRefused: a publisher whose clock is an hour ahead of (or
// behind) a real origin's gets a clear error from every kind of write and
// writes nothing: no record, no log entry. A publisher with a good clock
// on the same origin then writes normally.
func TestClockOffsetRefused(t *testing.T) {
	value := []byte(`{"deployment_id":"d","upstreams":["http://127.0.0.1:1"]}`)
	for name, store := range clockStores(t) {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if _, err := store.(origin.Clock).ServerTime(ctx); err != nil {
				t.Fatalf("ServerTime: %v", err)
			}
			for _, tc := range []struct {
				name   string
				offset time.Duration
				want   string
			}{
				{"ahead", time.Hour, "ahead"},
				{"behind", -time.Hour, "behind"},
			} {
				cfg := publisher.DefaultConfig()
				cfg.Clock = record.NewClock(func() time.Time { return time.Now().Add(tc.offset) })
				p, err := publisher.New(store, cfg)
				if err != nil {
					t.Fatal(err)
				}
				key := "clock-" + tc.name + ".example.com"
				_, err = p.Put(ctx, "routes", key, value)
				if !errors.Is(err, publisher.ErrClockOffset) || !strings.Contains(err.Error(), tc.want) ||
					!strings.Contains(err.Error(), "nothing was written") || !strings.Contains(err.Error(), "-clock-skew") {
					t.Fatalf("%s: Put = %v; want ErrClockOffset saying %q, that nothing was written and which flag sets the bound", tc.name, err, tc.want)
				}
				if _, err := p.Delete(ctx, "routes", key); !errors.Is(err, publisher.ErrClockOffset) {
					t.Fatalf("%s: Delete = %v, want ErrClockOffset", tc.name, err)
				}
				rec := record.Record{Namespace: "routes", Key: key, Value: value, Version: cfg.Clock.Now()}
				if _, err := p.PutVersion(ctx, rec); !errors.Is(err, publisher.ErrClockOffset) {
					t.Fatalf("%s: PutVersion = %v, want ErrClockOffset", tc.name, err)
				}
				if _, err := store.Get(ctx, "routes", key, 0); !errors.Is(err, origin.ErrNotFound) {
					t.Fatalf("%s: the refused writes left a record: Get = %v", tc.name, err)
				}
			}
			if log, err := store.ReadLog(ctx, 0, 100); err != nil || len(log) != 0 {
				t.Fatalf("the refused writes left log entries: %v, %v", log, err)
			}

			good, err := publisher.New(store, publisher.DefaultConfig())
			if err != nil {
				t.Fatal(err)
			}
			rec, err := good.Put(ctx, "routes", "clock-good.example.com", value)
			if err != nil {
				t.Fatalf("Put with a good clock: %v", err)
			}
			if got, err := store.Get(ctx, "routes", "clock-good.example.com", 0); err != nil || got.Version != rec.Version {
				t.Fatalf("Get after a good Put: %+v, %v", got, err)
			}
		})
	}
}
