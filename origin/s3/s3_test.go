package s3_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/dataplane/dataplane/internal/testserver"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/awsconn"
	"github.com/dataplane/dataplane/origin/origintest"
	"github.com/dataplane/dataplane/origin/s3"
	"github.com/dataplane/dataplane/record"
)

// server is the S3 server shared by this package's tests; each test gets a
// fresh bucket (or prefix). Tests that stop a server start their own.
var server *testserver.S3Server

func TestMain(m *testing.M) {
	var err error
	server, err = testserver.LaunchS3()
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: origin/s3 tests need a real S3 server: %v\n", err)
		os.Exit(1)
	}
	code := m.Run()
	server.Close()
	os.Exit(code)
}

var bucketSeq atomic.Int64

// config returns a Config for srv with a bucket name unique to this run.
func config(srv *testserver.S3Server) s3.Config {
	return s3.Config{
		Bucket: fmt.Sprintf("dp-test-%d-%d", os.Getpid(), bucketSeq.Add(1)),
		Conn: awsconn.Conn{
			Endpoint: srv.Endpoint, Region: srv.Region, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
			RetryBaseDelay: 10 * time.Millisecond, RetryMaxDelay: 100 * time.Millisecond,
		},
		UsePathStyle: true,
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// newStore opens a store on cfg and creates its bucket.
func newStore(t *testing.T, cfg s3.Config) *s3.Store {
	t.Helper()
	s, err := s3.New(ctx(t), cfg)
	if err != nil {
		t.Fatalf("s3.New: %v", err)
	}
	if err := s.CreateBucket(ctx(t)); err != nil {
		t.Fatalf("CreateBucket(%s): %v", cfg.Bucket, err)
	}
	return s
}

// rawClient is an SDK client on srv that bypasses the Store.
func rawClient(srv *testserver.S3Server) *awss3.Client {
	return awss3.New(awss3.Options{
		Region:       srv.Region,
		BaseEndpoint: aws.String(srv.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(srv.AccessKey, srv.SecretKey, ""),
	})
}

func corrupt(t *testing.T, st origin.Store, ns, key string) {
	s := st.(*s3.Store)
	_, err := rawClient(server).PutObject(ctx(t), &awss3.PutObjectInput{
		Bucket: aws.String(s.Bucket()),
		Key:    aws.String(s.RecordObjectName(ns, key)),
		Body:   strings.NewReader("\x00garbage, not a record"),
	})
	if err != nil {
		t.Fatalf("corrupt %s/%s: %v", ns, key, err)
	}
}

func TestConformance(t *testing.T) {
	origintest.Run(t, origintest.Harness{
		New:     func(t *testing.T) origin.Store { return newStore(t, config(server)) },
		Corrupt: corrupt,
	})
}

// TestConformancePrefix runs the suite with every store in one bucket, kept
// apart by Prefix alone.
func TestConformancePrefix(t *testing.T) {
	shared := config(server)
	newStore(t, shared)
	var n atomic.Int64
	origintest.Run(t, origintest.Harness{
		New: func(t *testing.T) origin.Store {
			cfg := shared
			cfg.Prefix = fmt.Sprintf("tenant-%d/", n.Add(1))
			s, err := s3.New(ctx(t), cfg)
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		Corrupt: corrupt,
	})
}

func TestMalformedEndpoint(t *testing.T) {
	for _, ep := range []string{
		"127.0.0.1:7070",       // no scheme
		"localhost:7070",       // parses as scheme "localhost"
		"ftp://127.0.0.1:7070", // wrong scheme
		"http://",              // no host
		"http://:7070",         // no host name
		"http://127.0.0.1:port",
		"http://[::1",
		"http://h:7070/?x=1",
		"http://user:pw@h:7070",
		"http//127.0.0.1:7070",
		" http://127.0.0.1",
	} {
		_, err := s3.New(context.Background(), s3.Config{Bucket: "b", Conn: awsconn.Conn{Endpoint: ep, AccessKey: "a", SecretKey: "s"}})
		if err == nil {
			t.Errorf("endpoint %q accepted", ep)
			continue
		}
		if !strings.Contains(err.Error(), fmt.Sprintf("%q", ep)) || !strings.Contains(err.Error(), "Endpoint") {
			t.Errorf("endpoint %q: error %q does not name the field and value", ep, err)
		}
	}
	for _, ep := range []string{"http://127.0.0.1:7070", "https://s3.example.com", "http://[::1]:9000/", "http://minio.local/base"} {
		if _, err := s3.New(context.Background(), s3.Config{Bucket: "b", Conn: awsconn.Conn{Endpoint: ep, AccessKey: "a", SecretKey: "s"}}); err != nil {
			t.Errorf("good endpoint %q rejected: %v", ep, err)
		}
	}
	if _, err := s3.New(context.Background(), s3.Config{Conn: awsconn.Conn{Endpoint: "http://127.0.0.1:1"}}); err == nil || !strings.Contains(err.Error(), "Bucket") {
		t.Errorf("missing bucket: %v", err)
	}
	if _, err := s3.New(context.Background(), s3.Config{Bucket: "b", Conn: awsconn.Conn{AccessKey: "a"}}); err == nil {
		t.Errorf("access key without secret accepted")
	}
}

func TestUnreachable(t *testing.T) {
	port, err := testserver.FreePort() // closed: nothing listens there
	if err != nil {
		t.Fatal(err)
	}
	cfg := s3.Config{
		Bucket: "nobody-home", UsePathStyle: true,
		Conn: awsconn.Conn{
			Endpoint:  fmt.Sprintf("http://127.0.0.1:%d", port),
			AccessKey: "a", SecretKey: "s", MaxRetries: 2, RetryBaseDelay: 10 * time.Millisecond,
		},
	}
	s, err := s3.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	c, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	for name, call := range map[string]func() error{
		"Get":            func() error { _, err := s.Get(c, "cfg", "k", 0); return err },
		"CompareAndSwap": func() error { return s.CompareAndSwap(c, record.Record{Namespace: "cfg", Key: "k", Version: 2}, 1) },
		"ReadLog":        func() error { _, err := s.ReadLog(c, 0, 10); return err },
		"AppendLog":      func() error { return s.AppendLog(c, record.Change{Namespace: "cfg", Key: "k", Version: 2}) },
		"GetSnapshot":    func() error { _, err := s.GetSnapshot(c, "cfg"); return err },
	} {
		err := call()
		if !errors.Is(err, origin.ErrUnavailable) {
			t.Errorf("%s on a closed port: %v, want ErrUnavailable", name, err)
		} else if !strings.Contains(err.Error(), "nobody-home") {
			t.Errorf("%s: error %q does not name the bucket", name, err)
		}
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("failing fast took %v", el)
	}

	// A deadline that passes while retrying is unavailability too, and
	// still says it was the deadline.
	slow := cfg
	slow.MaxRetries, slow.RetryBaseDelay = 10, time.Second
	s, _ = s3.New(context.Background(), slow)
	c2, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	_, err = s.Get(c2, "cfg", "k", 0)
	if !errors.Is(err, origin.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("deadline while retrying: %v, want ErrUnavailable and DeadlineExceeded", err)
	}
}

func TestCancelled(t *testing.T) {
	s := newStore(t, config(server))
	c, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.Get(c, "cfg", "k", 0)
	if !errors.Is(err, context.Canceled) || errors.Is(err, origin.ErrUnavailable) {
		t.Errorf("Get with cancelled context: %v, want context.Canceled only", err)
	}
	if err := s.CompareAndSwap(c, record.Record{Namespace: "cfg", Key: "k", Version: 1}, 0); !errors.Is(err, context.Canceled) {
		t.Errorf("CAS with cancelled context: %v", err)
	}
	if _, err := s.ReadLog(c, 0, 1); !errors.Is(err, context.Canceled) {
		t.Errorf("ReadLog with cancelled context: %v", err)
	}
}

// TestOutage stops the server under a store and starts it again.
func TestOutage(t *testing.T) {
	srv := testserver.StartS3(t)
	cfg := config(srv)
	cfg.MaxRetries = 1
	origintest.Outage(t, newStore(t, cfg), srv.Stop, srv.Start)
}

// exchange is one HTTP request and response seen by countingTransport.
type exchange struct {
	method, path, ifNoneMatch, ifMatch string
	status                             int
	bodyBytes                          *atomic.Int64
}

// countingTransport records every exchange and counts the response body
// bytes the client actually read.
type countingTransport struct {
	mu  sync.Mutex // guards log
	log []exchange
}

func (ct *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	e := exchange{
		method: req.Method, path: req.URL.Path, status: resp.StatusCode, bodyBytes: new(atomic.Int64),
		ifNoneMatch: req.Header.Get("If-None-Match"), ifMatch: req.Header.Get("If-Match"),
	}
	resp.Body = &countingBody{ReadCloser: resp.Body, n: e.bodyBytes}
	ct.mu.Lock()
	ct.log = append(ct.log, e)
	ct.mu.Unlock()
	return resp, nil
}

// take returns and clears the exchanges seen so far.
func (ct *countingTransport) take() []exchange {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	l := ct.log
	ct.log = nil
	return l
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

func TestNotModifiedIs304(t *testing.T) {
	cfg := config(server)
	writer := newStore(t, cfg)
	value := strings.Repeat("x", 4096)
	rec := record.Record{Namespace: "cfg", Key: "big", Value: []byte(value), Version: 100}
	if err := writer.CompareAndSwap(ctx(t), rec, 0); err != nil {
		t.Fatal(err)
	}

	ct := &countingTransport{}
	rcfg := cfg
	rcfg.HTTPClient = &http.Client{Transport: ct}
	reader, err := s3.New(ctx(t), rcfg)
	if err != nil {
		t.Fatal(err)
	}
	// A reader that has never seen the key has no ETag: one full GET.
	if _, err := reader.Get(ctx(t), "cfg", "big", 100); !errors.Is(err, origin.ErrNotModified) {
		t.Fatalf("first Get(ifNewer=100): %v, want ErrNotModified", err)
	}
	if ex := ct.take(); len(ex) != 1 || ex[0].status != 200 || ex[0].ifNoneMatch != "" {
		t.Fatalf("first Get: exchanges %+v, want one plain 200", ex)
	}
	// Now it has: a 304 without body, twice.
	for i := 0; i < 2; i++ {
		if _, err := reader.Get(ctx(t), "cfg", "big", 100); !errors.Is(err, origin.ErrNotModified) {
			t.Fatalf("Get(ifNewer=100) #%d: %v, want ErrNotModified", i, err)
		}
		ex := ct.take()
		if len(ex) != 1 || ex[0].method != "GET" || ex[0].status != http.StatusNotModified || ex[0].ifNoneMatch == "" {
			t.Fatalf("Get(ifNewer=100) #%d: exchanges %+v, want one conditional GET answered 304", i, ex)
		}
		if n := ex[0].bodyBytes.Load(); n != 0 {
			t.Fatalf("304 transferred %d body bytes", n)
		}
	}
	if _, err := reader.Get(ctx(t), "cfg", "big", 200); !errors.Is(err, origin.ErrNotModified) {
		t.Fatalf("Get(ifNewer=200): %v", err)
	}
	if ex := ct.take(); len(ex) != 1 || ex[0].status != http.StatusNotModified {
		t.Fatalf("Get(ifNewer=200): %+v, want a 304", ex)
	}
	// An older ifNewer wants the body.
	if got, err := reader.Get(ctx(t), "cfg", "big", 99); err != nil || got.Version != 100 {
		t.Fatalf("Get(ifNewer=99): %+v, %v", got, err)
	}
	if ex := ct.take(); len(ex) != 1 || ex[0].status != 200 || ex[0].bodyBytes.Load() < int64(len(value)) {
		t.Fatalf("Get(ifNewer=99): %+v, want a 200 with the body", ex)
	}

	// Another writer moves the key on: the conditional GET gets the new body.
	rec2 := record.Record{Namespace: "cfg", Key: "big", Value: []byte("v2"), Version: 200}
	if err := writer.CompareAndSwap(ctx(t), rec2, 100); err != nil {
		t.Fatal(err)
	}
	got, err := reader.Get(ctx(t), "cfg", "big", 100)
	if err != nil || got.Version != 200 || string(got.Value) != "v2" {
		t.Fatalf("Get(ifNewer=100) after update: %+v, %v", got, err)
	}
	if ex := ct.take(); len(ex) != 1 || ex[0].status != 200 || ex[0].ifNoneMatch == "" {
		t.Fatalf("Get after update: %+v, want a conditional GET answered 200", ex)
	}

	// Swapping from a version this store just read is one conditional PUT.
	rec3 := record.Record{Namespace: "cfg", Key: "big", Value: []byte("v3"), Version: 300}
	if err := reader.CompareAndSwap(ctx(t), rec3, 200); err != nil {
		t.Fatal(err)
	}
	if ex := ct.take(); len(ex) != 1 || ex[0].method != "PUT" || ex[0].ifMatch == "" || ex[0].status != 200 {
		t.Fatalf("CAS from a remembered version: %+v, want one PUT with If-Match", ex)
	}
	// The writer's memory is outdated now: its swap from 200 is refused
	// after a HEAD, and its swap from 300 succeeds.
	if err := writer.CompareAndSwap(ctx(t), record.Record{Namespace: "cfg", Key: "big", Version: 400, Tombstone: true}, 200); !errors.Is(err, origin.ErrConflict) {
		t.Fatalf("CAS from an outdated version: %v, want ErrConflict", err)
	}
	if err := writer.CompareAndSwap(ctx(t), record.Record{Namespace: "cfg", Key: "big", Version: 400, Tombstone: true}, 300); err != nil {
		t.Fatalf("CAS from the current version via HEAD: %v", err)
	}
}

// TestLogPaging reads a log longer than one ListObjectsV2 page, with many
// changes per version, through small limits.
func TestLogPaging(t *testing.T) {
	s := newStore(t, config(server))
	const versions, perVersion = 400, 3 // 1200 objects: two list pages
	var want []record.Change
	for v := 1; v <= versions; v++ {
		for k := 0; k < perVersion; k++ {
			want = append(want, record.Change{Namespace: "ns", Key: fmt.Sprintf("k/%d.%d", k, v), Version: record.Version(v)})
		}
	}
	c := ctx(t)
	work := make(chan record.Change)
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ch := range work {
				if err := s.AppendLog(c, ch); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for _, c := range want {
		work <- c
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	origin.SortChanges(want)

	all, err := s.ReadLog(ctx(t), 0, 0)
	if err != nil || len(all) != len(want) {
		t.Fatalf("ReadLog(0, no limit): %d changes, %v; want %d", len(all), err, len(want))
	}
	for i := range all {
		if all[i] != want[i] {
			t.Fatalf("ReadLog[%d] = %+v, want %+v", i, all[i], want[i])
		}
	}
	// A limit that cuts a version's changes still returns them in order.
	page, err := s.ReadLog(ctx(t), 10, 4)
	if err != nil || len(page) != 4 {
		t.Fatalf("ReadLog(10, 4): %+v, %v", page, err)
	}
	for i, c := range page {
		if c != want[10*perVersion+i] {
			t.Fatalf("ReadLog(10, 4)[%d] = %+v, want %+v", i, c, want[10*perVersion+i])
		}
	}
	// Trim across the page boundary.
	if err := s.TrimLog(ctx(t), 350); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReadLog(ctx(t), 300, 10); !errors.Is(err, origin.ErrLogTruncated) {
		t.Fatalf("ReadLog(300) after TrimLog(350): %v, want ErrLogTruncated", err)
	}
	rest, err := s.ReadLog(ctx(t), 349, 0)
	if err != nil || len(rest) != (versions-349)*perVersion || rest[0].Version != 350 {
		t.Fatalf("ReadLog(349) after trim: %d changes, %v", len(rest), err)
	}
	// The trimmed objects are gone, not just hidden.
	out, err := rawClient(server).ListObjectsV2(ctx(t), &awss3.ListObjectsV2Input{Bucket: aws.String(s.Bucket()), Prefix: aws.String("log/")})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(out.Contents); n != len(rest) {
		t.Fatalf("%d log objects after trim, want %d", n, len(rest))
	}
	// Trimming lower never lowers the horizon, as a store that has not
	// seen it yet finds out from the bucket.
	if err := s.TrimLog(ctx(t), 100); err != nil {
		t.Fatal(err)
	}
	other, err := s3.New(ctx(t), cfgOf(s))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.ReadLog(ctx(t), 300, 10); !errors.Is(err, origin.ErrLogTruncated) {
		t.Fatalf("horizon went down: %v", err)
	}
}

// cfgOf returns the test config of the shared server for s's bucket.
func cfgOf(s *s3.Store) s3.Config {
	cfg := config(server)
	cfg.Bucket = s.Bucket()
	return cfg
}

// TestMissingBucket: a missing bucket is no outage (the server answered,
// and asking again does not help) but an error that names the bucket and
// says to create it, as a missing table is for the DynamoDB store.
func TestMissingBucket(t *testing.T) {
	cfg := config(server) // bucket never created
	s, err := s3.New(ctx(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Get(ctx(t), "cfg", "k", 0)
	if err == nil || errors.Is(err, origin.ErrNotFound) || errors.Is(err, origin.ErrUnavailable) ||
		!strings.Contains(err.Error(), cfg.Bucket) || !strings.Contains(err.Error(), "create it with CreateBucket") {
		t.Fatalf("Get from a missing bucket: %v; want a plain error naming the bucket and saying to create it", err)
	}
}

func TestCorruptSnapshotAndHorizon(t *testing.T) {
	s := newStore(t, config(server))
	raw := rawClient(server)
	put := func(name, body string) {
		t.Helper()
		if _, err := raw.PutObject(ctx(t), &awss3.PutObjectInput{Bucket: aws.String(s.Bucket()), Key: aws.String(name), Body: strings.NewReader(body)}); err != nil {
			t.Fatal(err)
		}
	}
	put("snap/routes", "DS\x01garbage")
	if _, err := s.GetSnapshot(ctx(t), "routes"); !errors.Is(err, record.ErrCorrupt) || !strings.Contains(err.Error(), "routes") {
		t.Errorf("corrupt snapshot: %v, want ErrCorrupt naming it", err)
	}
	// A record object at another key's name is corrupt too.
	if err := s.CompareAndSwap(ctx(t), record.Record{Namespace: "cfg", Key: "a", Value: []byte("A"), Version: 1}, 0); err != nil {
		t.Fatal(err)
	}
	b, _ := record.Marshal(record.Record{Namespace: "cfg", Key: "a", Value: []byte("A"), Version: 1})
	put(s.RecordObjectName("cfg", "b"), string(b))
	if _, err := s.Get(ctx(t), "cfg", "b", 0); !errors.Is(err, record.ErrCorrupt) {
		t.Errorf("record under the wrong name: %v, want ErrCorrupt", err)
	}
	// A stray object in the log is skipped; a corrupt horizon is an error
	// that the next TrimLog repairs.
	put("log/not-a-change", "")
	if err := s.AppendLog(ctx(t), record.Change{Namespace: "cfg", Key: "a", Version: 5}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.ReadLog(ctx(t), 0, 10); err != nil || len(got) != 1 {
		t.Errorf("ReadLog with a stray object: %+v, %v", got, err)
	}
	put("log-horizon", "bogus")
	if _, err := s.ReadLog(ctx(t), 0, 10); !errors.Is(err, record.ErrCorrupt) {
		t.Errorf("ReadLog with a corrupt horizon: %v, want ErrCorrupt", err)
	}
	if err := s.TrimLog(ctx(t), 3); err != nil {
		t.Fatal(err)
	}
	if got, err := s.ReadLog(ctx(t), 2, 10); err != nil || len(got) != 1 {
		t.Errorf("ReadLog after repairing trim: %+v, %v", got, err)
	}
}

// The benchmarks measure one store operation against the local server; run
// with -bench . -benchtime 2s. Compare Get/full with Get/304 to see what a
// conditional read saves, and ReadLog with Get/304 to see what reading the
// horizon on every ReadLog costs (one small GET).
func BenchmarkGet(b *testing.B) {
	cfg := config(server)
	s, err := s3.New(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	if err := s.CreateBucket(context.Background()); err != nil {
		b.Fatal(err)
	}
	val := []byte(strings.Repeat("v", 1024))
	if err := s.CompareAndSwap(context.Background(), record.Record{Namespace: "cfg", Key: "k", Value: val, Version: 10}, 0); err != nil {
		b.Fatal(err)
	}
	b.Run("full", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.Get(context.Background(), "cfg", "k", 0); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("304", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.Get(context.Background(), "cfg", "k", 10); !errors.Is(err, origin.ErrNotModified) {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkReadLog(b *testing.B) {
	s, err := s3.New(context.Background(), config(server))
	if err != nil {
		b.Fatal(err)
	}
	if err := s.CreateBucket(context.Background()); err != nil {
		b.Fatal(err)
	}
	for v := record.Version(1); v <= 20; v++ {
		if err := s.AppendLog(context.Background(), record.Change{Namespace: "cfg", Key: fmt.Sprint("k", v), Version: v}); err != nil {
			b.Fatal(err)
		}
	}
	for _, after := range []record.Version{20, 10} {
		b.Run(fmt.Sprintf("after=%d", after), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.ReadLog(context.Background(), after, 100); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestServerTime: the server's time comes from the Date of any answer, a
// refusal included (a HEAD of a bucket that does not exist is a 404).
func TestServerTime(t *testing.T) {
	for _, create := range []bool{true, false} {
		cfg := config(server)
		s, err := s3.New(ctx(t), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if create {
			if err := s.CreateBucket(ctx(t)); err != nil {
				t.Fatal(err)
			}
		}
		before := time.Now().Add(-time.Second).Truncate(time.Second) // a Date has whole seconds
		got, err := s.ServerTime(ctx(t))
		after := time.Now().Add(time.Second)
		if err != nil || got.Before(before) || got.After(after) {
			t.Errorf("bucket created %v: ServerTime = %v, %v; want a time in [%v, %v]", create, got, err, before, after)
		}
	}
}

// TestConnWinsOverEnvironment: with the SDK's default credential chain
// (no AccessKey), the SDK's environment does not change the Conn's
// settings: AWS_MAX_ATTEMPTS does not replace MaxRetries (it did for the
// S3 store before both stores shared one client set-up), and
// AWS_ENDPOINT_URL_S3 does not replace Endpoint.
func TestConnWinsOverEnvironment(t *testing.T) {
	serve := func(n *atomic.Int64) *httptest.Server {
		h := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n.Add(1)
			w.WriteHeader(http.StatusServiceUnavailable)
		}))
		t.Cleanup(h.Close)
		return h
	}
	var configured, fromEnv atomic.Int64
	ep, envEP := serve(&configured), serve(&fromEnv)
	empty := t.TempDir() + "/none"
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "s", "AWS_MAX_ATTEMPTS": "1",
		"AWS_ENDPOINT_URL_S3": envEP.URL, "AWS_CONFIG_FILE": empty, "AWS_SHARED_CREDENTIALS_FILE": empty,
		"AWS_EC2_METADATA_DISABLED": "true",
	} {
		t.Setenv(k, v)
	}
	s, err := s3.New(ctx(t), s3.Config{Bucket: "b", UsePathStyle: true, Conn: awsconn.Conn{
		Endpoint: ep.URL, MaxRetries: 2, RetryBaseDelay: time.Millisecond, RetryMaxDelay: 2 * time.Millisecond,
	}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx(t), "cfg", "k", 0); !errors.Is(err, origin.ErrUnavailable) {
		t.Fatalf("Get from a server answering 503: %v, want ErrUnavailable", err)
	}
	if configured.Load() != 3 || fromEnv.Load() != 0 {
		t.Errorf("requests: %d to Endpoint, %d to AWS_ENDPOINT_URL_S3; want 3 (1 + MaxRetries 2) and 0", configured.Load(), fromEnv.Load())
	}
}
