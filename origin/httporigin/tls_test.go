package httporigin_test

import (
	"errors"
	"net/http"
	"testing"

	"github.com/dataplane/dataplane/cachenode"
	"github.com/dataplane/dataplane/internal/tlsconfig"
	"github.com/dataplane/dataplane/internal/tlsconfig/tlstest"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/dir"
	"github.com/dataplane/dataplane/origin/httporigin"
	"github.com/dataplane/dataplane/record"
)

// TestTLS reads and writes through a real cache node serving mutual TLS on
// loopback, and checks that a client the node does not trust gets nothing.
func TestTLS(t *testing.T) {
	t.Parallel()
	certs := tlstest.New(t)
	d, err := dir.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg := cachenode.DefaultConfig()
	cfg.Origin, cfg.WriteToken = d, token
	node, err := cachenode.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(node.Close)
	srvTLS, err := tlsconfig.Server{CertFile: certs.ServerCert, KeyFile: certs.ServerKey, ClientCAFile: certs.CA}.Config()
	if err != nil {
		t.Fatal(err)
	}
	// A real server, as the cachenode command runs it (httptest would add
	// its own certificate, which takes precedence over GetCertificate).
	nodeURL := tlstest.Serve(t, srvTLS, node)

	rec := record.Record{Namespace: "routes", Key: "tls.example.com", Value: []byte(`{"tls":true}`), Version: 0x10000}
	if _, err := origin.Publish(ctx(t), d, rec); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		cli  tlsconfig.Client
		ok   bool
	}{
		{"trusted client", tlsconfig.Client{CAFile: certs.CA, CertFile: certs.ClientCert, KeyFile: certs.ClientKey}, true},
		{"no client certificate", tlsconfig.Client{CAFile: certs.CA}, false},
		{"node not trusted", tlsconfig.Client{CertFile: certs.ClientCert, KeyFile: certs.ClientKey}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cc, err := tc.cli.Config()
			if err != nil {
				t.Fatal(err)
			}
			s, err := httporigin.New(httporigin.Config{Nodes: []string{nodeURL}, Token: token, TLS: cc})
			if err != nil {
				t.Fatal(err)
			}
			got, err := s.Get(ctx(t), rec.Namespace, rec.Key, 0)
			if !tc.ok {
				if !errors.Is(err, origin.ErrUnavailable) {
					t.Fatalf("Get: %v, want origin.ErrUnavailable (handshake refused)", err)
				}
				return
			}
			if err != nil || string(got.Value) != string(rec.Value) || got.Version != rec.Version {
				t.Fatalf("Get over TLS: %+v, %v", got, err)
			}
			next := rec
			next.Version, next.Value = rec.Version+1, []byte(`{"tls":2}`)
			if err := s.CompareAndSwap(ctx(t), next, rec.Version); err != nil {
				t.Fatalf("CompareAndSwap over TLS: %v", err)
			}
			if got, err := d.Get(ctx(t), rec.Namespace, rec.Key, 0); err != nil || got.Version != next.Version {
				t.Fatalf("origin after the write: %+v, %v", got, err)
			}
		})
	}
}

func TestTLSWithHTTPClientRefused(t *testing.T) {
	t.Parallel()
	cc, err := tlsconfig.Client{}.Config()
	if err != nil {
		t.Fatal(err)
	}
	_, err = httporigin.New(httporigin.Config{Nodes: []string{"https://127.0.0.1:1"}, TLS: cc, HTTPClient: http.DefaultClient})
	if err == nil {
		t.Fatal("New accepted both TLS and HTTPClient")
	}
}
