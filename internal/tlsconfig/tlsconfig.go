// Package tlsconfig builds the *tls.Config of every dataplane listener and
// client from file names, as the command-line flags give them: a certificate
// and key to serve with, a CA to verify clients with (mutual TLS), a CA to
// trust and a client certificate to present. Both sides refuse anything
// older than TLS 1.2.
//
// Certificates are reloaded: when a certificate or key file changes on disk
// (a renewal), new handshakes use the new pair, checked at most once per
// ReloadInterval, with no restart. A pair that fails to load is ignored and
// the last good one kept, so a half-written renewal never takes a listener
// down. A listener's client CA file (mutual TLS) is reloaded the same way,
// so a CA can be rotated (old and new in the file, then the new alone)
// without a restart. A client's CA file is read once, at Config.
package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// Server names the files of a TLS listener. The zero value means plain
// HTTP.
type Server struct {
	// CertFile and KeyFile are the PEM certificate chain and private key
	// the listener presents. Both or neither.
	CertFile, KeyFile string
	// ClientCAFile, when set, turns on mutual TLS: every client must
	// present a certificate signed by one of the PEM CAs in it.
	ClientCAFile string
	// MinVersion is "1.2" (the default when empty) or "1.3".
	MinVersion string
}

// Enabled reports whether s asks for TLS at all.
func (s Server) Enabled() bool { return s.CertFile != "" || s.KeyFile != "" || s.ClientCAFile != "" }

// Config returns the listener's *tls.Config, or nil when s is the zero
// value (plain HTTP). It fails, naming the file, when a file cannot be read
// or parsed, or when a client CA is given without a certificate to serve.
// The certificate is served through GetCertificate, so that renewals are
// picked up: do not add Certificates to the result (Go prefers them for
// clients that send no server name, as when dialling an IP address).
func (s Server) Config() (*tls.Config, error) {
	if !s.Enabled() {
		if s.MinVersion != "" {
			if _, err := ParseVersion(s.MinVersion); err != nil {
				return nil, err
			}
		}
		return nil, nil
	}
	if s.CertFile == "" || s.KeyFile == "" {
		return nil, errors.New("tlsconfig: a TLS listener needs both a certificate and a key file")
	}
	minV, err := ParseVersion(s.MinVersion)
	if err != nil {
		return nil, err
	}
	kp, err := loadKeyPair(s.CertFile, s.KeyFile)
	if err != nil {
		return nil, err
	}
	c := &tls.Config{
		MinVersion: minV,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return kp.get(), nil
		},
	}
	if s.ClientCAFile != "" {
		cas, err := loadCAFile(s.ClientCAFile)
		if err != nil {
			return nil, err
		}
		// Go verifies against a fixed ClientCAs; to follow the file, the
		// handshake asks for a certificate (and checks the client holds
		// its key) and VerifyConnection checks the chain against the
		// current pool. ClientCAs stays as the hint sent to clients.
		c.ClientCAs, c.ClientAuth = cas.get(), tls.RequireAnyClientCert
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			return verifyClient(cs, cas.get())
		}
	}
	return c, nil
}

// verifyClient checks a client's certificate chain against roots, as
// tls.RequireAndVerifyClientCert would.
func verifyClient(cs tls.ConnectionState, roots *x509.CertPool) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("tlsconfig: client sent no certificate")
	}
	opts := x509.VerifyOptions{
		Roots:         roots,
		Intermediates: x509.NewCertPool(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	for _, c := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
		return fmt.Errorf("tlsconfig: client certificate: %w", err)
	}
	return nil
}

// Client names the files of a TLS client. The zero value means the system's
// roots and no client certificate.
type Client struct {
	// CAFile holds the PEM CAs the client trusts instead of the system's
	// roots (a private CA for the cache tier). Empty: system roots.
	CAFile string
	// CertFile and KeyFile are the client certificate and key presented
	// to a server that asks for one (mutual TLS). Both or neither.
	CertFile, KeyFile string
	// ServerName overrides the name checked in the server's certificate;
	// empty means the host of the URL dialled.
	ServerName string
	// MinVersion is "1.2" (the default when empty) or "1.3".
	MinVersion string
}

// Enabled reports whether c sets anything beyond the defaults.
func (c Client) Enabled() bool {
	return c.CAFile != "" || c.CertFile != "" || c.KeyFile != "" || c.ServerName != "" || c.MinVersion != ""
}

// Config returns the client's *tls.Config. It is never nil, so a client
// dialling https:// always refuses TLS below 1.2. It fails, naming the file,
// when a file cannot be read or parsed, or when only one of CertFile and
// KeyFile is set.
func (c Client) Config() (*tls.Config, error) {
	minV, err := ParseVersion(c.MinVersion)
	if err != nil {
		return nil, err
	}
	t := &tls.Config{MinVersion: minV, ServerName: c.ServerName}
	if c.CAFile != "" {
		if t.RootCAs, err = loadPool(c.CAFile); err != nil {
			return nil, err
		}
	}
	switch {
	case c.CertFile != "" && c.KeyFile != "":
		kp, err := loadKeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, err
		}
		t.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return kp.get(), nil
		}
	case c.CertFile != "" || c.KeyFile != "":
		return nil, errors.New("tlsconfig: a client certificate needs both a certificate and a key file")
	}
	return t, nil
}

// ParseVersion maps "1.2" (or "") and "1.3" to their tls.Version constants.
// Older versions are refused: they have known weaknesses.
func ParseVersion(s string) (uint16, error) {
	switch s {
	case "", "1.2":
		return tls.VersionTLS12, nil
	case "1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("tlsconfig: minimum TLS version %q: want 1.2 or 1.3", s)
}

// ReloadInterval is how often, at most, a certificate and key file pair is
// checked for changes; the check runs on a handshake, never in the
// background.
const ReloadInterval = time.Second

// keyPair is a certificate and key loaded from files, reloaded when they
// change.
type keyPair struct {
	certFile, keyFile string

	mu sync.Mutex // guards the fields below
	// cert is the last pair that loaded.
	cert *tls.Certificate
	// certMod and keyMod are the files' modification times when they were
	// last tried, loaded or not (a broken pair is not retried until it
	// changes again).
	certMod, keyMod time.Time
	// checked is when the files were last looked at.
	checked time.Time
}

// loadKeyPair loads the pair, failing with an error naming the files.
func loadKeyPair(certFile, keyFile string) (*keyPair, error) {
	kp := &keyPair{certFile: certFile, keyFile: keyFile, checked: time.Now()}
	kp.certMod, kp.keyMod = modTime(certFile), modTime(keyFile)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("tlsconfig: certificate %s with key %s: %w", certFile, keyFile, err)
	}
	kp.cert = &cert
	return kp, nil
}

// get returns the current pair, first reloading it if ReloadInterval has
// passed since the last check and either file has changed since.
func (kp *keyPair) get() *tls.Certificate {
	kp.mu.Lock()
	defer kp.mu.Unlock()
	now := time.Now()
	if now.Sub(kp.checked) < ReloadInterval {
		return kp.cert
	}
	kp.checked = now
	cm, km := modTime(kp.certFile), modTime(kp.keyFile)
	if cm.Equal(kp.certMod) && km.Equal(kp.keyMod) {
		return kp.cert
	}
	kp.certMod, kp.keyMod = cm, km
	if cert, err := tls.LoadX509KeyPair(kp.certFile, kp.keyFile); err == nil {
		kp.cert = &cert
	}
	return kp.cert
}

// caFile is a PEM CA file loaded into a pool, reloaded when it changes.
type caFile struct {
	file string

	mu sync.Mutex // guards the fields below
	// pool is the last file content that parsed.
	pool *x509.CertPool
	// mod is the file's modification time when last tried.
	mod time.Time
	// checked is when the file was last looked at.
	checked time.Time
}

// loadCAFile loads file, failing with an error naming it.
func loadCAFile(file string) (*caFile, error) {
	cf := &caFile{file: file, checked: time.Now(), mod: modTime(file)}
	pool, err := loadPool(file)
	if err != nil {
		return nil, err
	}
	cf.pool = pool
	return cf, nil
}

// get returns the current pool, first reloading the file if ReloadInterval
// has passed since the last check and it changed since; a file that does
// not parse leaves the last good pool in place.
func (cf *caFile) get() *x509.CertPool {
	cf.mu.Lock()
	defer cf.mu.Unlock()
	now := time.Now()
	if now.Sub(cf.checked) < ReloadInterval {
		return cf.pool
	}
	cf.checked = now
	m := modTime(cf.file)
	if m.Equal(cf.mod) {
		return cf.pool
	}
	cf.mod = m
	if pool, err := loadPool(cf.file); err == nil {
		cf.pool = pool
	}
	return cf.pool
}

// modTime is the modification time of file, zero if it cannot be read.
func modTime(file string) time.Time {
	fi, err := os.Stat(file)
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}

// loadPool reads the PEM certificates of file into a new pool.
func loadPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("tlsconfig: CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("tlsconfig: CA file %s holds no PEM certificate", file)
	}
	return pool, nil
}
