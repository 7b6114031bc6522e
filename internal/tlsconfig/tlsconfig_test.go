package tlsconfig_test

import (
	"bytes"
	"crypto/tls"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dataplane/dataplane/internal/testkit"
	"github.com/dataplane/dataplane/internal/tlsconfig"
	"github.com/dataplane/dataplane/internal/tlsconfig/tlstest"
)

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	f := tlstest.New(t)
	junk := filepath.Join(t.TempDir(), "junk.pem")
	if err := os.WriteFile(junk, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		srv  *tlsconfig.Server
		cli  *tlsconfig.Client
		want string // "" means success
	}{
		{"server zero is plain", &tlsconfig.Server{}, nil, ""},
		{"server ok", &tlsconfig.Server{CertFile: f.ServerCert, KeyFile: f.ServerKey}, nil, ""},
		{"server mtls ok", &tlsconfig.Server{CertFile: f.ServerCert, KeyFile: f.ServerKey, ClientCAFile: f.CA, MinVersion: "1.3"}, nil, ""},
		{"server cert without key", &tlsconfig.Server{CertFile: f.ServerCert}, nil, "both a certificate and a key"},
		{"server client CA alone", &tlsconfig.Server{ClientCAFile: f.CA}, nil, "both a certificate and a key"},
		{"server missing file", &tlsconfig.Server{CertFile: "/nonexistent.pem", KeyFile: f.ServerKey}, nil, "/nonexistent.pem"},
		{"server junk CA", &tlsconfig.Server{CertFile: f.ServerCert, KeyFile: f.ServerKey, ClientCAFile: junk}, nil, "no PEM certificate"},
		{"server old version", &tlsconfig.Server{CertFile: f.ServerCert, KeyFile: f.ServerKey, MinVersion: "1.0"}, nil, `"1.0"`},
		{"server plain bad version", &tlsconfig.Server{MinVersion: "1.1"}, nil, `"1.1"`},
		{"client zero", nil, &tlsconfig.Client{}, ""},
		{"client ok", nil, &tlsconfig.Client{CAFile: f.CA, CertFile: f.ClientCert, KeyFile: f.ClientKey}, ""},
		{"client key without cert", nil, &tlsconfig.Client{KeyFile: f.ClientKey}, "both a certificate and a key"},
		{"client missing CA", nil, &tlsconfig.Client{CAFile: "/nonexistent-ca.pem"}, "/nonexistent-ca.pem"},
		{"client junk CA", nil, &tlsconfig.Client{CAFile: junk}, "no PEM certificate"},
		{"client bad version", nil, &tlsconfig.Client{MinVersion: "TLS1.3"}, `"TLS1.3"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var (
				c   *tls.Config
				err error
			)
			if tc.srv != nil {
				c, err = tc.srv.Config()
			} else {
				c, err = tc.cli.Config()
			}
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				if c != nil && c.MinVersion < tls.VersionTLS12 {
					t.Fatalf("MinVersion %x below TLS 1.2", c.MinVersion)
				}
				if tc.cli != nil && c == nil {
					t.Fatal("client config is nil")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestMutualTLS runs a real TLS listener on loopback with mutual TLS and
// checks who gets in.
func TestMutualTLS(t *testing.T) {
	t.Parallel()
	f := tlstest.New(t)
	other := tlstest.New(t) // a second, unrelated CA
	srvCfg, err := tlsconfig.Server{CertFile: f.ServerCert, KeyFile: f.ServerKey, ClientCAFile: f.CA}.Config()
	if err != nil {
		t.Fatal(err)
	}
	url := tlstest.Serve(t, srvCfg, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello "+r.TLS.PeerCertificates[0].Subject.CommonName)
	})) + "/"

	for _, tc := range []struct {
		name string
		cli  tlsconfig.Client
		ok   bool
	}{
		{"client certificate of the CA", tlsconfig.Client{CAFile: f.CA, CertFile: f.ClientCert, KeyFile: f.ClientKey}, true},
		{"TLS 1.3 minimum", tlsconfig.Client{CAFile: f.CA, CertFile: f.ClientCert, KeyFile: f.ClientKey, MinVersion: "1.3"}, true},
		{"no client certificate", tlsconfig.Client{CAFile: f.CA}, false},
		{"client certificate of another CA", tlsconfig.Client{CAFile: f.CA, CertFile: other.ClientCert, KeyFile: other.ClientKey}, false},
		{"server not trusted", tlsconfig.Client{CertFile: f.ClientCert, KeyFile: f.ClientKey}, false},
		{"server of another CA", tlsconfig.Client{CAFile: other.CA, CertFile: f.ClientCert, KeyFile: f.ClientKey}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cc, err := tc.cli.Config()
			if err != nil {
				t.Fatal(err)
			}
			tr := &http.Transport{TLSClientConfig: cc}
			t.Cleanup(tr.CloseIdleConnections)
			resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get(url)
			if !tc.ok {
				if err == nil {
					resp.Body.Close()
					t.Fatalf("request succeeded with status %d, want a refused handshake", resp.StatusCode)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || string(b) != "hello client" {
				t.Fatalf("status %d body %q", resp.StatusCode, b)
			}
		})
	}
}

// TestReload renews the server's certificate on disk while it serves: new
// handshakes get the new certificate without a restart, and a broken file
// in between leaves the last good certificate in place.
func TestReload(t *testing.T) {
	t.Parallel()
	a, b := tlstest.New(t), tlstest.New(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	caFile := filepath.Join(dir, "cas.pem")
	copyFile := func(dst, src string) {
		t.Helper()
		bs, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, bs, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Files a renewal writes get a later modification time; set it so the
	// test does not depend on the file system's clock granularity.
	touch := func(files ...string) {
		t.Helper()
		touch := time.Now().Add(time.Duration(len(files)) * time.Hour)
		for _, f := range files {
			if err := os.Chtimes(f, touch, touch); err != nil {
				t.Fatal(err)
			}
		}
	}
	copyFile(certFile, a.ServerCert)
	copyFile(keyFile, a.ServerKey)
	caA, _ := os.ReadFile(a.CA)
	caB, _ := os.ReadFile(b.CA)
	if err := os.WriteFile(caFile, append(caA, caB...), 0o600); err != nil {
		t.Fatal(err)
	}
	srvCfg, err := tlsconfig.Server{CertFile: certFile, KeyFile: keyFile}.Config()
	if err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimPrefix(tlstest.Serve(t, srvCfg, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})), "https://")
	cc, err := tlsconfig.Client{CAFile: caFile}.Config()
	if err != nil {
		t.Fatal(err)
	}
	// served returns the DER of the certificate a new connection gets.
	served := func() []byte {
		t.Helper()
		conn, err := tls.Dial("tcp", addr, cc)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Raw
	}
	der := func(pemFile string) []byte {
		t.Helper()
		bs, err := os.ReadFile(pemFile)
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(bs)
		return blk.Bytes
	}
	waitFor := func(want []byte, what string) {
		t.Helper()
		testkit.Eventually(t, 5*tlsconfig.ReloadInterval, "serving "+what, func() bool { return bytes.Equal(served(), want) })
	}
	if !bytes.Equal(served(), der(a.ServerCert)) {
		t.Fatal("not serving the first certificate")
	}

	// A renewal half-written: the new certificate without its key. The old
	// pair keeps serving.
	copyFile(certFile, b.ServerCert)
	touch(certFile)
	time.Sleep(tlsconfig.ReloadInterval + 100*time.Millisecond) // let a check pass
	for i := 0; i < 3; i++ {
		if !bytes.Equal(served(), der(a.ServerCert)) {
			t.Fatal("a mismatched certificate and key replaced the good pair")
		}
	}
	// The renewal completes.
	copyFile(keyFile, b.ServerKey)
	touch(certFile, keyFile)
	waitFor(der(b.ServerCert), "the renewed certificate")
}

// TestClientCAReload rotates the client CA file of a mutual-TLS listener
// while it serves: a client of a CA added to the file gets in without a
// restart, a broken file keeps the last good CAs, and a CA removed from the
// file is refused.
func TestClientCAReload(t *testing.T) {
	t.Parallel()
	a, b := tlstest.New(t), tlstest.New(t)
	caFile := filepath.Join(t.TempDir(), "client-cas.pem")
	caA, _ := os.ReadFile(a.CA)
	caB, _ := os.ReadFile(b.CA)
	write := func(content []byte, hour int) {
		t.Helper()
		if err := os.WriteFile(caFile, content, 0o600); err != nil {
			t.Fatal(err)
		}
		// A later modification time each step, whatever the file system's
		// clock granularity.
		mt := time.Now().Add(time.Duration(hour) * time.Hour)
		if err := os.Chtimes(caFile, mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	write(caA, 0)
	srvCfg, err := tlsconfig.Server{CertFile: a.ServerCert, KeyFile: a.ServerKey, ClientCAFile: caFile}.Config()
	if err != nil {
		t.Fatal(err)
	}
	url := tlstest.Serve(t, srvCfg, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })) + "/"
	// gets reports whether a client of CA f gets an answer on a new connection.
	gets := func(f tlstest.Files) bool {
		t.Helper()
		cc, err := tlsconfig.Client{CAFile: a.CA, CertFile: f.ClientCert, KeyFile: f.ClientKey}.Config()
		if err != nil {
			t.Fatal(err)
		}
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: cc, DisableKeepAlives: true}, Timeout: 5 * time.Second}
		resp, err := c.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}
	waitFor := func(f tlstest.Files, want bool, what string) {
		t.Helper()
		testkit.Eventually(t, 5*tlsconfig.ReloadInterval, what, func() bool { return gets(f) == want })
	}
	if !gets(a) || gets(b) {
		t.Fatal("at start: want the client of CA a in and that of CA b refused")
	}
	write(append(append([]byte{}, caA...), caB...), 1)
	waitFor(b, true, "the client of the added CA b gets in")
	write([]byte("-----BEGIN CERTIFICATE-----\nbroken"), 2)
	time.Sleep(tlsconfig.ReloadInterval + 100*time.Millisecond) // let a check pass
	if !gets(a) || !gets(b) {
		t.Fatal("a broken CA file replaced the good CAs")
	}
	write(caB, 3)
	waitFor(a, false, "the client of the removed CA a is refused")
	if !gets(b) {
		t.Fatal("the client of CA b is refused after a was removed")
	}
}
