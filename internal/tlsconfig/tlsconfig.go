// Package tlsconfig builds the *tls.Config of every dataplane listener and
// client from file names, as the command-line flags give them: a certificate
// and key to serve with, a CA to verify clients with (mutual TLS), a CA to
// trust and a client certificate to present. Both sides refuse anything
// older than TLS 1.2.
package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
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
	cert, err := tls.LoadX509KeyPair(s.CertFile, s.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tlsconfig: certificate %s with key %s: %w", s.CertFile, s.KeyFile, err)
	}
	c := &tls.Config{MinVersion: minV, Certificates: []tls.Certificate{cert}}
	if s.ClientCAFile != "" {
		pool, err := loadPool(s.ClientCAFile)
		if err != nil {
			return nil, err
		}
		c.ClientCAs, c.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return c, nil
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
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tlsconfig: client certificate %s with key %s: %w", c.CertFile, c.KeyFile, err)
		}
		t.Certificates = []tls.Certificate{cert}
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
