package dynamodb_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/dataplane/dataplane/internal/testserver"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/awsconn"
	"github.com/dataplane/dataplane/origin/dynamodb"
	"github.com/dataplane/dataplane/origin/origintest"
	"github.com/dataplane/dataplane/record"
)

// One dynalite serves the whole package, started by the first test that
// needs it; each test gets a table of its own.
var (
	sharedOnce sync.Once
	sharedSrv  *testserver.DynamoServer
	sharedErr  error
	tableSeq   atomic.Int64
)

func TestMain(m *testing.M) {
	code := m.Run()
	if sharedSrv != nil {
		sharedSrv.Close()
	}
	os.Exit(code)
}

func server(t *testing.T) *testserver.DynamoServer {
	t.Helper()
	sharedOnce.Do(func() { sharedSrv, sharedErr = testserver.LaunchDynamo() })
	if sharedErr != nil {
		t.Fatalf("%v", sharedErr)
	}
	return sharedSrv
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// conn is how a store reaches srv.
func conn(srv *testserver.DynamoServer) awsconn.Conn {
	return awsconn.Conn{Endpoint: srv.Endpoint, Region: srv.Region, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey}
}

// newStore opens a store on a new table of srv and creates the table;
// tweak adjusts the config first.
func newStore(t *testing.T, srv *testserver.DynamoServer, tweak func(*dynamodb.Config)) *dynamodb.Store {
	t.Helper()
	cfg := dynamodb.Config{Table: fmt.Sprintf("dataplane-test-%d", tableSeq.Add(1)), Conn: conn(srv)}
	if tweak != nil {
		tweak(&cfg)
	}
	s, err := dynamodb.New(ctx(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateTable(ctx(t)); err != nil {
		t.Fatalf("CreateTable: %v", err)
	}
	t.Cleanup(func() {
		// Best effort: the server may be stopped by the test.
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Client().DeleteTable(c, &ddb.DeleteTableInput{TableName: aws.String(s.Table())})
	})
	return s
}

func TestConformance(t *testing.T) {
	srv := server(t)
	origintest.Run(t, origintest.Harness{
		New: func(t *testing.T) origin.Store { return newStore(t, srv, nil) },
		Corrupt: func(t *testing.T, s origin.Store, ns, key string) {
			ds := s.(*dynamodb.Store)
			item := dynamodb.RecordKey(ns, key)
			item["ver"] = &types.AttributeValueMemberN{Value: "10"}
			item["rec"] = &types.AttributeValueMemberB{Value: []byte("DR\x01garbage")}
			if _, err := ds.Client().PutItem(ctx(t), &ddb.PutItemInput{TableName: aws.String(ds.Table()), Item: item}); err != nil {
				t.Fatal(err)
			}
		},
	})
}

// TestCorruptItems: items that decode but do not belong where they are
// stored are corrupt too, and say which key.
func TestCorruptItems(t *testing.T) {
	s := newStore(t, server(t), nil)
	other, err := record.Marshal(record.Record{Namespace: "cfg", Key: "other", Value: []byte("v"), Version: 7})
	if err != nil {
		t.Fatal(err)
	}
	for name, attrs := range map[string]map[string]types.AttributeValue{
		"another key's record": {"ver": &types.AttributeValueMemberN{Value: "7"}, "rec": &types.AttributeValueMemberB{Value: other}},
		"version mismatch":     {"ver": &types.AttributeValueMemberN{Value: "8"}, "rec": &types.AttributeValueMemberB{Value: other}},
		"no record":            {"ver": &types.AttributeValueMemberN{Value: "7"}},
		"record as string":     {"ver": &types.AttributeValueMemberN{Value: "7"}, "rec": &types.AttributeValueMemberS{Value: "x"}},
		"no version":           {"rec": &types.AttributeValueMemberB{Value: other}},
	} {
		key := "other"
		if name == "another key's record" {
			key = "k"
		}
		item := dynamodb.RecordKey("cfg", key)
		for k, v := range attrs {
			item[k] = v
		}
		if _, err := s.Client().PutItem(ctx(t), &ddb.PutItemInput{TableName: aws.String(s.Table()), Item: item}); err != nil {
			t.Fatal(err)
		}
		_, err := s.Get(ctx(t), "cfg", key, 0)
		if !errors.Is(err, record.ErrCorrupt) || !strings.Contains(err.Error(), "cfg/"+key) {
			t.Errorf("%s: Get = %v, want record.ErrCorrupt naming cfg/%s", name, err, key)
		}
	}
}

func TestCreateTableIdempotent(t *testing.T) {
	s := newStore(t, server(t), nil)
	if err := s.CreateTable(ctx(t)); err != nil {
		t.Fatalf("second CreateTable: %v", err)
	}
	// A table of that name with another key schema is refused.
	srv := server(t)
	other, err := dynamodb.New(ctx(t), dynamodb.Config{Table: fmt.Sprintf("dataplane-test-%d", tableSeq.Add(1)), Conn: conn(srv)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = other.Client().CreateTable(ctx(t), &ddb.CreateTableInput{
		TableName:            aws.String(other.Table()),
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("id"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("id"), KeyType: types.KeyTypeHash}},
		BillingMode:          types.BillingModePayPerRequest,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := other.CreateTable(ctx(t)); err == nil || !strings.Contains(err.Error(), "key schema") {
		t.Fatalf("CreateTable over a table with another schema: %v, want an error about the key schema", err)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, ep := range []string{
		"127.0.0.1:8000", "localhost:8000", "ftp://127.0.0.1:8000", "http://", "http://:8000",
		"http://127.0.0.1:port", "http://127.0.0.1:99999", "http://u:p@127.0.0.1:8000", "http://127.0.0.1:8000/?x=1",
		"http://[::1", " http://127.0.0.1:8000",
	} {
		_, err := dynamodb.New(ctx(t), dynamodb.Config{Table: "tbl", Conn: awsconn.Conn{Endpoint: ep, AccessKey: "a", SecretKey: "b"}})
		if err == nil {
			t.Errorf("New with Endpoint %q succeeded", ep)
			continue
		}
		if !strings.Contains(err.Error(), fmt.Sprintf("%q", ep)) || !strings.Contains(err.Error(), "Endpoint") {
			t.Errorf("New with Endpoint %q: error %q does not name the endpoint", ep, err)
		}
	}
	for _, tc := range []struct {
		name string
		cfg  dynamodb.Config
	}{
		{"no table", dynamodb.Config{}},
		{"short table", dynamodb.Config{Table: "ab"}},
		{"bad table", dynamodb.Config{Table: "a table"}},
		{"half credentials", dynamodb.Config{Table: "tbl", Conn: awsconn.Conn{AccessKey: "a"}}},
		{"too many log shards", dynamodb.Config{Table: "tbl", LogShards: dynamodb.MaxLogShards + 1}},
		{"negative log shards", dynamodb.Config{Table: "tbl", LogShards: -1}},
	} {
		if _, err := dynamodb.New(ctx(t), tc.cfg); err == nil {
			t.Errorf("%s: New succeeded", tc.name)
		}
	}
}

// fastRetries keeps tests of failures short.
func fastRetries(c *dynamodb.Config) {
	c.MaxRetries = 2
	c.RetryBaseDelay = 10 * time.Millisecond
	c.RetryMaxDelay = 50 * time.Millisecond
}

func TestUnreachable(t *testing.T) {
	port, err := testserver.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cfg := dynamodb.Config{Table: "tbl", Conn: awsconn.Conn{Endpoint: fmt.Sprintf("http://127.0.0.1:%d", port), AccessKey: "a", SecretKey: "b"}}
	fastRetries(&cfg)
	s, err := dynamodb.New(ctx(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	_, err = s.Get(c, "routes", "a.example.com", 0)
	if !errors.Is(err, origin.ErrUnavailable) {
		t.Fatalf("Get from a closed port: %v, want ErrUnavailable", err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get from a closed port ran into the deadline: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Get from a closed port took %v", d)
	}
	if !strings.Contains(err.Error(), "tbl") || !strings.Contains(err.Error(), "routes/a.example.com") {
		t.Fatalf("error %q does not name table and key", err)
	}
	err = s.CompareAndSwap(c, record.Record{Namespace: "routes", Key: "a", Value: []byte("v"), Version: 1}, 0)
	if !errors.Is(err, origin.ErrUnavailable) {
		t.Fatalf("CAS to a closed port: %v, want ErrUnavailable", err)
	}
	if _, err := s.ReadLog(c, 0, 10); !errors.Is(err, origin.ErrUnavailable) {
		t.Fatalf("ReadLog from a closed port: %v, want ErrUnavailable", err)
	}
}

// TestMissingTable: a missing table is no outage (the server answered,
// and asking again does not help) but an error that names the table and
// says it does not exist, as a missing bucket is for the S3 store.
func TestMissingTable(t *testing.T) {
	srv := server(t)
	s, err := dynamodb.New(ctx(t), dynamodb.Config{
		Table: "no-such-table", Conn: conn(srv),
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Get(ctx(t), "routes", "a", 0)
	if err == nil || errors.Is(err, origin.ErrUnavailable) || errors.Is(err, origin.ErrNotFound) ||
		!strings.Contains(err.Error(), "no-such-table") || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("Get on a missing table: %v; want a plain error naming the table and saying it does not exist", err)
	}
}

// TestOutage: while the server is down every call fails with
// ErrUnavailable; once it is back the data is there and calls work.
func TestOutage(t *testing.T) {
	srv := testserver.StartDynamo(t)
	origintest.Outage(t, newStore(t, srv, fastRetries), srv.Stop, srv.Start)
}

// bigSnapshot holds n records of nearly MaxValueSize each.
func bigSnapshot(ns string, v record.Version, n int) record.Snapshot {
	snap := record.Snapshot{Namespace: ns, Version: v}
	for i := 0; i < n; i++ {
		val := bytes.Repeat([]byte{byte('a' + i)}, record.MaxValueSize-i)
		snap.Records = append(snap.Records, record.Record{Namespace: ns, Key: fmt.Sprintf("k%03d", i), Value: val, Version: record.Version(i + 1)})
	}
	return snap
}

// partitionSize counts the items of a snapshot partition (a Query reads at
// most 1 MB per page, also when it only counts).
func partitionSize(t *testing.T, s *dynamodb.Store, ns string) int {
	t.Helper()
	in := &ddb.QueryInput{
		TableName:                 aws.String(s.Table()),
		KeyConditionExpression:    aws.String("pk = :pk"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": &types.AttributeValueMemberS{Value: "snap#" + ns}},
		Select:                    types.SelectCount,
		ConsistentRead:            aws.Bool(true),
	}
	n := 0
	for {
		out, err := s.Client().Query(ctx(t), in)
		if err != nil {
			t.Fatal(err)
		}
		n += int(out.Count)
		if len(out.LastEvaluatedKey) == 0 {
			return n
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
	}
}

// TestBigSnapshot: a snapshot over the 400 KB item limit is chunked and
// reads back whole; replacing it removes the old chunks.
func TestBigSnapshot(t *testing.T) {
	s := newStore(t, server(t), nil)
	big := bigSnapshot("blobs", 100, 5) // about 1.25 MiB: 4 chunks
	if err := s.PutSnapshot(ctx(t), big); err != nil {
		t.Fatalf("PutSnapshot of %d records: %v", len(big.Records), err)
	}
	got, err := s.GetSnapshot(ctx(t), "blobs")
	if err != nil {
		t.Fatalf("GetSnapshot: %v", err)
	}
	if got.Version != 100 || len(got.Records) != len(big.Records) {
		t.Fatalf("GetSnapshot: version %s, %d records", got.Version, len(got.Records))
	}
	for i, r := range got.Records {
		if !bytes.Equal(r.Value, big.Records[i].Value) || r.Key != big.Records[i].Key {
			t.Fatalf("record %d read back as %s with %d bytes", i, r.Key, len(r.Value))
		}
	}
	// Over origin.DefaultLayout's InlineSize: the main pointer holds a
	// manifest naming one base part, whose pointer names 4 chunks.
	if n := partitionSize(t, s, "blobs"); n != 6 {
		t.Fatalf("partition holds %d items, want the main pointer, a part's pointer and 4 chunks", n)
	}
	// Another big one replaces it, then a small one (inline).
	big2 := bigSnapshot("blobs", 200, 3)
	if err := s.PutSnapshot(ctx(t), big2); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetSnapshot(ctx(t), "blobs"); err != nil || got.Version != 200 || len(got.Records) != 3 {
		t.Fatalf("after replacement: %v, %v", got.Version, err)
	}
	if n := partitionSize(t, s, "blobs"); n != 4 {
		t.Fatalf("after replacement the partition holds %d items, want the pointer and 3 chunks", n)
	}
	small := record.Snapshot{Namespace: "blobs", Version: 300, Records: []record.Record{{Namespace: "blobs", Key: "x", Value: []byte("y"), Version: 300}}}
	if err := s.PutSnapshot(ctx(t), small); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetSnapshot(ctx(t), "blobs"); err != nil || got.Version != 300 || len(got.Records) != 1 {
		t.Fatalf("after small replacement: %v, %v", got.Version, err)
	}
	if n := partitionSize(t, s, "blobs"); n != 1 {
		t.Fatalf("after small replacement the partition holds %d items, want only the pointer", n)
	}
}

// hookClient calls before (if set) ahead of each request it sends.
type hookClient struct{ before func(*http.Request) }

func (c hookClient) Do(r *http.Request) (*http.Response, error) {
	if c.before != nil {
		c.before(r)
	}
	return http.DefaultClient.Do(r)
}

// TestSnapshotReplacedWhileReading: a reader that has read the pointer of a
// chunked snapshot whose chunks are then replaced and deleted reads the
// pointer again and returns the new snapshot, whole.
func TestSnapshotReplacedWhileReading(t *testing.T) {
	srv := server(t)
	writer := newStore(t, srv, nil)
	if err := writer.PutSnapshot(ctx(t), bigSnapshot("blobs", 1, 3)); err != nil {
		t.Fatal(err)
	}
	var fired atomic.Bool
	c := conn(srv)
	c.HTTPClient = hookClient{before: func(r *http.Request) {
		// Between the reader's pointer read and its chunk Query.
		if r.Header.Get("X-Amz-Target") == "DynamoDB_20120810.Query" && fired.CompareAndSwap(false, true) {
			if err := writer.PutSnapshot(context.Background(), bigSnapshot("blobs", 2, 2)); err != nil {
				t.Errorf("replacing snapshot: %v", err)
			}
		}
	}}
	reader, err := dynamodb.New(ctx(t), dynamodb.Config{Table: writer.Table(), Conn: c})
	if err != nil {
		t.Fatal(err)
	}
	got, err := reader.GetSnapshot(ctx(t), "blobs")
	if err != nil {
		t.Fatalf("GetSnapshot while replaced: %v", err)
	}
	if !fired.Load() {
		t.Fatal("the replacement never ran")
	}
	if got.Version != 2 || len(got.Records) != 2 {
		t.Fatalf("GetSnapshot = version %s with %d records, want the replacement (2, 2 records)", got.Version, len(got.Records))
	}
}

// TestSnapshotChunkLost: a chunk missing from the current generation is
// corruption, reported as such.
func TestSnapshotChunkLost(t *testing.T) {
	s := newStore(t, server(t), nil)
	if err := s.PutSnapshot(ctx(t), bigSnapshot("blobs", 1, 3)); err != nil {
		t.Fatal(err)
	}
	out, err := s.Client().Query(ctx(t), &ddb.QueryInput{
		TableName:                 aws.String(s.Table()),
		KeyConditionExpression:    aws.String("pk = :pk AND begins_with(sk, :g)"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": &types.AttributeValueMemberS{Value: "snap#blobs"}, ":g": &types.AttributeValueMemberS{Value: "gen#"}},
		ProjectionExpression:      aws.String("pk, sk"),
		Limit:                     aws.Int32(2),
	})
	if err != nil || len(out.Items) != 2 {
		t.Fatalf("listing chunks: %v, %v", out, err)
	}
	if _, err := s.Client().DeleteItem(ctx(t), &ddb.DeleteItemInput{TableName: aws.String(s.Table()), Key: out.Items[1]}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetSnapshot(ctx(t), "blobs"); !errors.Is(err, record.ErrCorrupt) || !strings.Contains(err.Error(), "blobs") {
		t.Fatalf("GetSnapshot with a lost chunk: %v, want record.ErrCorrupt naming the namespace", err)
	}
}

// TestLogAcrossBuckets: real clock versions spread over many hours and days
// land in several buckets; ReadLog pages through them in order, and
// TrimLog removes whole buckets.
func TestLogAcrossBuckets(t *testing.T) {
	s := newStore(t, server(t), nil)
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	var all []record.Version
	for i, d := range []time.Duration{0, time.Minute, 3 * time.Hour, 3*time.Hour + time.Second, 50 * time.Hour, 24 * 30 * time.Hour} {
		for j := uint16(0); j < 3; j++ {
			v := record.MakeVersion(base.Add(d), j)
			all = append(all, v)
			c := record.Change{Namespace: "routes", Key: fmt.Sprintf("k%d-%d", i, j), Version: v, Tombstone: j == 2}
			if err := s.AppendLog(ctx(t), c); err != nil {
				t.Fatal(err)
			}
		}
	}
	var got []record.Change
	for after := record.Version(0); ; {
		page, err := s.ReadLog(ctx(t), after, 4)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		if len(page) > 4 {
			t.Fatalf("ReadLog(limit 4) returned %d", len(page))
		}
		got = append(got, page...)
		after = page[len(page)-1].Version
	}
	if len(got) != len(all) {
		t.Fatalf("paged through %d changes, want %d", len(got), len(all))
	}
	for i, c := range got {
		if c.Version != all[i] || c.Tombstone != (i%3 == 2) {
			t.Fatalf("change %d = %+v, want version %s", i, c, all[i])
		}
	}
	// Trim inside the fifth group's bucket: earlier buckets go entirely.
	cut := all[13]
	if err := s.TrimLog(ctx(t), cut); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReadLog(ctx(t), all[5], 100); !errors.Is(err, origin.ErrLogTruncated) {
		t.Fatalf("ReadLog below the horizon: %v, want ErrLogTruncated", err)
	}
	rest, err := s.ReadLog(ctx(t), cut-1, 100)
	if err != nil || len(rest) != len(all)-13 || rest[0].Version != cut {
		t.Fatalf("ReadLog at the horizon: %d changes, %v; want %d from %s", len(rest), err, len(all)-13, cut)
	}
	// A lower trim does not lower the horizon.
	if err := s.TrimLog(ctx(t), all[2]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReadLog(ctx(t), all[5], 100); !errors.Is(err, origin.ErrLogTruncated) {
		t.Fatalf("horizon went down: %v", err)
	}
	out, err := s.Client().Query(ctx(t), &ddb.QueryInput{
		TableName:                 aws.String(s.Table()),
		KeyConditionExpression:    aws.String("pk = :pk"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": &types.AttributeValueMemberS{Value: "logmeta"}},
		ConsistentRead:            aws.Bool(true),
	})
	if err != nil {
		t.Fatal(err)
	}
	// The horizon, plus the markers of buckets not wholly below the cut
	// (a bucket spans 2^38 versions: see the package documentation).
	live := map[record.Version]bool{}
	for _, v := range all {
		if b := v &^ (1<<38 - 1); b+1<<38 > cut {
			live[b] = true
		}
	}
	if want := 1 + len(live); int(out.Count) != want {
		t.Fatalf("logmeta holds %d items after the trim, want %d: %v", out.Count, want, out.Items)
	}
}

// countingClient counts the requests it sends.
type countingClient struct{ n *atomic.Int64 }

func (c countingClient) Do(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return http.DefaultClient.Do(r)
}

// faultClient answers the first failN requests itself with status and a
// DynamoDB error body of type code, then passes requests to the server.
type faultClient struct {
	n      *atomic.Int64
	failN  int64
	status int
	code   string
}

func (c faultClient) Do(r *http.Request) (*http.Response, error) {
	if c.n.Add(1) > c.failN {
		return http.DefaultClient.Do(r)
	}
	body := fmt.Sprintf(`{"__type":"com.amazonaws.dynamodb.v20120810#%s","message":"injected"}`, c.code)
	return &http.Response{
		Status: http.StatusText(c.status), StatusCode: c.status, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {"application/x-amz-json-1.0"}},
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       r,
	}, nil
}

// TestRetries: throttling and 5xx answers are retried with backoff; when
// they outlast the retries the error is ErrUnavailable naming table and key.
func TestRetries(t *testing.T) {
	srv := server(t)
	base := newStore(t, srv, nil)
	if err := base.CompareAndSwap(ctx(t), record.Record{Namespace: "cfg", Key: "k", Value: []byte("v"), Version: 1}, 0); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		status int
		code   string
	}{
		{500, "InternalServerError"},
		{503, "ServiceUnavailable"},
		{400, "ProvisionedThroughputExceededException"},
		{400, "ThrottlingException"},
	} {
		for _, failN := range []int64{2, 100} {
			var n atomic.Int64
			c := conn(srv)
			c.HTTPClient = faultClient{n: &n, failN: failN, status: tc.status, code: tc.code}
			c.MaxRetries, c.RetryBaseDelay, c.RetryMaxDelay = 3, time.Millisecond, 5*time.Millisecond
			s, err := dynamodb.New(ctx(t), dynamodb.Config{Table: base.Table(), Conn: c})
			if err != nil {
				t.Fatal(err)
			}
			got, err := s.Get(ctx(t), "cfg", "k", 0)
			switch {
			case failN == 2 && (err != nil || string(got.Value) != "v"):
				t.Errorf("%d %s twice, then success: %v, want the record after retries", tc.status, tc.code, err)
			case failN == 2 && n.Load() != 3:
				t.Errorf("%d %s twice: %d attempts, want 3", tc.status, tc.code, n.Load())
			case failN > 2 && !errors.Is(err, origin.ErrUnavailable):
				t.Errorf("%d %s always: %v, want ErrUnavailable", tc.status, tc.code, err)
			case failN > 2 && (!strings.Contains(err.Error(), base.Table()) || !strings.Contains(err.Error(), "cfg/k")):
				t.Errorf("%d %s always: %q does not name table and key", tc.status, tc.code, err)
			case failN > 2 && n.Load() != 4:
				t.Errorf("%d %s always: %d attempts, want 1 + MaxRetries = 4", tc.status, tc.code, n.Load())
			}
		}
	}
}

// TestHTTPClient: the configured HTTP client (the bench's latency injector)
// sends every request.
func TestHTTPClient(t *testing.T) {
	var n atomic.Int64
	srv := server(t)
	s := newStore(t, srv, func(c *dynamodb.Config) {
		c.HTTPClient = countingClient{n: &n}
	})
	before := n.Load()
	if _, err := s.Get(ctx(t), "routes", "x", 0); !errors.Is(err, origin.ErrNotFound) {
		t.Fatal(err)
	}
	if n.Load() != before+1 {
		t.Fatalf("Get made %d requests through the configured client, want 1", n.Load()-before)
	}
}
