package dynamodb_test

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/dataplane/dataplane/origin/dynamodb"
	"github.com/dataplane/dataplane/record"
)

// logPartitions counts the change log items per partition key.
func logPartitions(t *testing.T, s *dynamodb.Store) map[string]int {
	t.Helper()
	out := map[string]int{}
	var start map[string]types.AttributeValue
	for {
		page, err := s.Client().Scan(ctx(t), &ddb.ScanInput{TableName: aws.String(s.Table()), ExclusiveStartKey: start})
		if err != nil {
			t.Fatal(err)
		}
		for _, item := range page.Items {
			if pk := item["pk"].(*types.AttributeValueMemberS).Value; strings.HasPrefix(pk, "log#") {
				out[pk]++
			}
		}
		if len(page.LastEvaluatedKey) == 0 {
			return out
		}
		start = page.LastEvaluatedKey
	}
}

// readAll pages through the whole log with the given page size.
func readAll(t *testing.T, s *dynamodb.Store, page int) []record.Change {
	t.Helper()
	var got []record.Change
	for after := record.Version(0); ; {
		cs, err := s.ReadLog(ctx(t), after, page)
		if err != nil {
			t.Fatal(err)
		}
		if len(cs) == 0 {
			return got
		}
		for i := 1; i < len(cs); i++ {
			if cs[i].Version < cs[i-1].Version {
				t.Fatalf("ReadLog page out of order: %+v", cs)
			}
		}
		got = append(got, cs...)
		after = cs[len(cs)-1].Version
	}
}

// TestLogShards: a bucket's entries spread over its shards, reads merge them
// in version order at one Query per shard, and stores with different
// LogShards settings (or a table written before sharding) agree, because a
// bucket keeps the shard count of its marker.
func TestLogShards(t *testing.T) {
	srv := server(t)
	var requests atomic.Int64
	four := newStore(t, srv, func(c *dynamodb.Config) {
		c.LogShards = 4
		c.HTTPClient = countingClient{&requests}
	})
	base := time.Now().Add(-time.Hour)
	var want []record.Version
	for i := 0; i < 40; i++ {
		v := record.MakeVersion(base.Add(time.Duration(i)*time.Millisecond), 0)
		want = append(want, v)
		c := record.Change{Namespace: "routes", Key: fmt.Sprintf("host-%d.example.com", i), Version: v}
		if err := four.AppendLog(ctx(t), c); err != nil {
			t.Fatal(err)
		}
	}
	parts := logPartitions(t, four)
	if len(parts) != 4 {
		t.Fatalf("40 entries in partitions %v, want 4 shards", parts)
	}
	for pk, n := range parts {
		if n > 25 {
			t.Fatalf("shard %s holds %d of 40 entries: not spread", pk, n)
		}
	}
	for _, page := range []int{3, 7, 1000} {
		got := readAll(t, four, page)
		if len(got) != len(want) {
			t.Fatalf("page %d: read %d changes, want %d", page, len(got), len(want))
		}
		for i, c := range got {
			if c.Version != want[i] {
				t.Fatalf("page %d: change %d has version %s, want %s", page, i, c.Version, want[i])
			}
		}
	}
	requests.Store(0)
	if _, err := four.ReadLog(ctx(t), want[0], 0); err != nil {
		t.Fatal(err)
	}
	if n := requests.Load(); n != 1+4+1 {
		t.Fatalf("ReadLog of one bucket sent %d requests, want 6 (markers, one Query per shard, horizon)", n)
	}

	// A store configured with one shard writes into the same table: into
	// the existing 4-shard bucket it writes by the marker, and the
	// 4-shard store reads everything.
	one := newStore(t, srv, func(c *dynamodb.Config) { c.Table, c.LogShards = four.Table(), 1 })
	late := record.MakeVersion(base.Add(time.Second), 0)
	if err := one.AppendLog(ctx(t), record.Change{Namespace: "keys", Key: "ks/x", Version: late, Tombstone: true}); err != nil {
		t.Fatal(err)
	}
	if got := logPartitions(t, four); len(got) != 4 {
		t.Fatalf("a 1-shard writer created partitions %v in a 4-shard bucket", got)
	}
	got := readAll(t, four, 5)
	if len(got) != 41 || got[40].Version != late || !got[40].Tombstone {
		t.Fatalf("after the 1-shard writer: %d changes, last %+v", len(got), got[len(got)-1])
	}
	// A bucket first opened by the 1-shard store stays unsharded (the
	// layout of tables written before sharding), and both read it.
	next := record.MakeVersion(base.Add(100*time.Hour), 0)
	if err := one.AppendLog(ctx(t), record.Change{Namespace: "routes", Key: "a", Version: next}); err != nil {
		t.Fatal(err)
	}
	if err := four.AppendLog(ctx(t), record.Change{Namespace: "routes", Key: "b", Version: next + 1}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*dynamodb.Store{one, four} {
		cs, err := s.ReadLog(ctx(t), late, 0)
		if err != nil || len(cs) != 2 || cs[0].Key != "a" || cs[1].Key != "b" {
			t.Fatalf("ReadLog of the unsharded bucket = %+v, %v", cs, err)
		}
	}
	unsharded := 0
	for pk := range logPartitions(t, four) {
		if strings.Count(pk, "#") == 1 {
			unsharded++
		}
	}
	if unsharded != 1 {
		t.Fatalf("want exactly one unsharded bucket partition, got %v", logPartitions(t, four))
	}
	// Trimming empties every shard.
	if err := four.TrimLog(ctx(t), next+2); err != nil {
		t.Fatal(err)
	}
	if got := logPartitions(t, four); len(got) != 0 {
		t.Fatalf("after trimming everything, log partitions %v remain", got)
	}
}
