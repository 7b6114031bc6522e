package s3_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/dataplane/dataplane/internal/testserver"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/origintest"
	"github.com/dataplane/dataplane/origin/s3"
	"github.com/dataplane/dataplane/record"
)

// keyLimitProxy is an S3 endpoint in front of srv that refuses an object
// name over 1024 bytes with 400 KeyTooLongError, as AWS S3 and MinIO do
// (versitygw does not enforce the limit). It counts the refusals.
func keyLimitProxy(t *testing.T, srv *testserver.S3Server) (string, *atomic.Int64) {
	t.Helper()
	target, err := url.Parse(srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	refused := new(atomic.Int64)
	h := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Path style: /<bucket>/<object name>.
		if _, name, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/"); ok && len(name) > 1024 {
			refused.Add(1)
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>KeyTooLongError</Code><Message>Your key is too long</Message><Key>%d bytes</Key></Error>`, len(name))
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(h.Close)
	return h.URL, refused
}

// TestObjectNamesFit1024: with the longest prefix Config accepts, a
// 64-byte namespace and a 256-byte key that escapes fully (all within the
// documented limits), signed and unsigned puts and tombstones are
// published, noted as pending, listed and read back in full through a
// server that enforces S3's 1024-byte object names; nothing is refused.
func TestObjectNamesFit1024(t *testing.T) {
	endpoint, refused := keyLimitProxy(t, server)
	cfg := config(server)
	cfg.Endpoint = endpoint
	cfg.Prefix = strings.Repeat("p", 127) + "/" + strings.Repeat("q", 127) + "/"
	if len(cfg.Prefix) != 256 {
		t.Fatalf("prefix of %d bytes", len(cfg.Prefix))
	}
	st := newStore(t, cfg)

	// The proxy does refuse what S3 refuses.
	raw := awss3.New(awss3.Options{Region: server.Region, BaseEndpoint: aws.String(endpoint), UsePathStyle: true, Credentials: rawClient(server).Options().Credentials})
	if _, err := raw.PutObject(ctx(t), &awss3.PutObjectInput{Bucket: aws.String(cfg.Bucket), Key: aws.String(strings.Repeat("x", 1025)), Body: strings.NewReader("")}); err == nil || !strings.Contains(err.Error(), "KeyTooLongError") {
		t.Fatalf("a 1025-byte name through the proxy: %v, want KeyTooLongError", err)
	}
	refused.Store(0)

	ns := strings.Repeat("n", record.MaxNamespaceLen)
	seal := &record.Seal{KeyID: [8]byte{7}, Digest: [32]byte{8}, Sig: [64]byte{9, 0xff}}
	keys := []string{strings.Repeat("%", record.MaxKeyLen), strings.Repeat(".", record.MaxKeyLen-1) + "x", strings.Repeat("日", record.MaxKeyLen/3), "short"}
	clock := record.NewClock(nil)
	var want []record.Change
	for i, key := range keys {
		for _, del := range []bool{false, true} {
			rec := record.Record{Namespace: ns, Key: key, Version: clock.Now(), Value: []byte(key), Tombstone: del}
			if del {
				rec.Value = nil
			}
			if i%2 == 0 {
				rec.Seal = seal
			}
			c := rec.Change()
			if err := st.PutPending(ctx(t), c); err != nil {
				t.Fatalf("PutPending %s/%.20q (%d bytes): %v", ns, key, len(key), err)
			}
			pend, err := st.ListPending(ctx(t), 0)
			if err != nil || len(pend) != 1 || !reflect.DeepEqual(pend[0], c) {
				t.Fatalf("ListPending = %+v, %v; want [%+v]", pend, err, c)
			}
			if _, err := origin.Publish(ctx(t), st, rec); err != nil {
				t.Fatalf("Publish %s/%.20q (%d bytes): %v", ns, key, len(key), err)
			}
			if err := st.DeletePending(ctx(t), c); err != nil {
				t.Fatal(err)
			}
			want = append(want, c)
			got, err := st.Get(ctx(t), ns, key, 0)
			if err != nil || got.Version != rec.Version || got.Tombstone != del {
				t.Fatalf("Get %s/%.20q = %+v, %v; want version %s", ns, key, got, err, rec.Version)
			}
		}
	}
	if pend, err := st.ListPending(ctx(t), 0); err != nil || len(pend) != 0 {
		t.Fatalf("ListPending after deleting every note = %+v, %v", pend, err)
	}
	log, err := st.ReadLog(ctx(t), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	origin.SortChanges(want)
	if !reflect.DeepEqual(log, want) {
		t.Fatalf("ReadLog = %d changes %+v\nwant %d %+v", len(log), log, len(want), want)
	}
	// Paged reads resolve hashed names too.
	var paged []record.Change
	for after := record.Version(0); ; {
		page, err := st.ReadLog(ctx(t), after, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		paged = append(paged, page...)
		after = page[len(page)-1].Version
	}
	if !reflect.DeepEqual(paged, want) {
		t.Fatalf("ReadLog one at a time = %+v\nwant %+v", paged, want)
	}
	if n := refused.Load(); n != 0 {
		t.Fatalf("the server refused %d names over 1024 bytes", n)
	}
}

// TestConformanceKeyLimit runs the store suite through a server that
// enforces S3's 1024-byte names, every store under a prefix of the
// longest length Config accepts.
func TestConformanceKeyLimit(t *testing.T) {
	endpoint, refused := keyLimitProxy(t, server)
	shared := config(server)
	shared.Endpoint = endpoint
	newStore(t, shared)
	var n atomic.Int64
	origintest.Run(t, origintest.Harness{
		New: func(t *testing.T) origin.Store {
			cfg := shared
			cfg.Prefix = fmt.Sprintf("%0127d/%0127d/", n.Add(1), 0)
			s, err := s3.New(ctx(t), cfg)
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		Corrupt: corrupt,
	})
	if n := refused.Load(); n != 0 {
		t.Fatalf("the server refused %d names over 1024 bytes", n)
	}
}
