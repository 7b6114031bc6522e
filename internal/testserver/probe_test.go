package testserver

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dataplane/dataplane/internal/testkit"
)

// TestProbesNeedARealAnswer: a server that listens but answers 503 (MinIO's
// "server not initialized") or 403 is not ready; the probes pass only once
// a signed request succeeds.
func TestProbesNeedARealAnswer(t *testing.T) {
	cases := []struct {
		name  string
		probe func(endpoint string) func() error
		ok    func(w http.ResponseWriter)
	}{
		{"s3", func(ep string) func() error { return s3Ready(ep, "us-east-1", "k", "s") }, func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/xml")
			w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?><ListAllMyBucketsResult><Owner><ID>x</ID></Owner><Buckets></Buckets></ListAllMyBucketsResult>`))
		}},
		{"dynamodb", func(ep string) func() error { return dynamoReady(ep, "us-east-1", "k", "s") }, func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/x-amz-json-1.0")
			w.Write([]byte(`{"TableNames":[]}`))
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var calls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				switch n := calls.Add(1); {
				case n <= 2:
					w.WriteHeader(http.StatusServiceUnavailable)
					w.Write([]byte("server not initialized"))
				case n <= 3:
					w.WriteHeader(http.StatusForbidden)
				default:
					c.ok(w)
				}
			}))
			defer srv.Close()
			probe := c.probe(srv.URL)
			for i := 1; i <= 3; i++ {
				if err := probe(); err == nil {
					t.Fatalf("probe %d passed while the server answers errors", i)
				}
			}
			if err := WaitReady(5*time.Second, nil, probe); err != nil {
				t.Fatalf("probe never passed once the server answers: %v", err)
			}
			if n := calls.Load(); n != 4 {
				t.Fatalf("%d requests, want 4 (the SDK must not retry inside a probe)", n)
			}
		})
	}
}

// TestStartedServersAnswer: the servers the tests use answer a real request
// the moment Start returns.
func TestStartedServersAnswer(t *testing.T) {
	s3srv := StartS3(t)
	if err := s3Ready(s3srv.Endpoint, s3srv.Region, s3srv.AccessKey, s3srv.SecretKey)(); err != nil {
		t.Fatalf("S3 server not answering after StartS3: %v", err)
	}
	dyn := StartDynamo(t)
	if err := dynamoReady(dyn.Endpoint, dyn.Region, dyn.AccessKey, dyn.SecretKey)(); err != nil {
		t.Fatalf("DynamoDB server not answering after StartDynamo: %v", err)
	}
	if err := s3Ready(s3srv.Endpoint, s3srv.Region, "wrong", "creds")(); err == nil || !strings.Contains(err.Error(), "403") && !strings.Contains(strings.ToLower(err.Error()), "access") {
		t.Fatalf("S3 probe with bad credentials = %v, want an access error", err)
	}
}

// TestDynamoRestartOnCrash: with RestartOnCrash, a dynalite that dies is
// started again on its address with its tables; without it, it stays down.
func TestDynamoRestartOnCrash(t *testing.T) {
	srv := StartDynamo(t)
	srv.RestartOnCrash.Store(true)
	kill := func() {
		srv.proc.mu.Lock()
		cmd := srv.proc.cmd
		srv.proc.mu.Unlock()
		if cmd == nil {
			t.Fatal("server not running")
		}
		cmd.Process.Kill()
	}
	kill()
	probe := dynamoReady(srv.Endpoint, srv.Region, srv.AccessKey, srv.SecretKey)
	testkit.Eventually(t, 20*time.Second, "a restart after the crash", func() bool {
		n, _ := srv.Crashes()
		return n == 1 && probe() == nil
	})
	srv.RestartOnCrash.Store(false)
	kill()
	testkit.Eventually(t, 10*time.Second, "the second crash", func() bool {
		n, _ := srv.Crashes()
		return n == 2
	})
	if err := probe(); err == nil {
		t.Fatal("server answered after a crash without RestartOnCrash")
	}
}
