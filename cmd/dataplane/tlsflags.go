package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/dataplane/dataplane/internal/tlsconfig"
)

// Limits of every HTTP listener the commands start.
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 120 * time.Second
	maxHeaderBytes    = 64 << 10
	// adminReadTimeout bounds reading a whole admin request: they are GETs
	// with no body to wait for.
	adminReadTimeout = 30 * time.Second
	// adminWriteTimeout bounds writing an admin response (metrics, debug).
	adminWriteTimeout = 30 * time.Second
	// apiGrace is the time an API request or response may take on top of
	// its transfer at apiMinRate.
	apiGrace = 30 * time.Second
)

// serverTLSFlags are the TLS flags of one listener: -<prefix>tls-cert,
// -<prefix>tls-key, -<prefix>tls-client-ca and -<prefix>tls-min-version.
type serverTLSFlags struct {
	prefix string
	tlsconfig.Server
}

// register defines the flags on fs; what names the listener in the help.
func (f *serverTLSFlags) register(fs *flag.FlagSet, prefix, what string) {
	f.prefix = prefix
	fs.StringVar(&f.CertFile, prefix+"tls-cert", "", "PEM certificate (chain) file: serve the "+what+" over HTTPS (with -"+prefix+"tls-key)")
	fs.StringVar(&f.KeyFile, prefix+"tls-key", "", "PEM private key file of -"+prefix+"tls-cert")
	fs.StringVar(&f.ClientCAFile, prefix+"tls-client-ca", "", "PEM CA file: require a client certificate signed by it on the "+what+" (mutual TLS)")
	fs.StringVar(&f.MinVersion, prefix+"tls-min-version", "1.2", "oldest TLS version the "+what+" accepts: 1.2 or 1.3")
}

// config returns the listener's TLS config, nil for plain HTTP; an error
// names the flags.
func (f *serverTLSFlags) config() (*tls.Config, error) {
	c, err := f.Config()
	if err != nil {
		return nil, usageError{fmt.Errorf("-%stls-*: %w", f.prefix, err)}
	}
	return c, nil
}

// originTLSFlags are the client TLS flags for an https:// cache-tier origin.
type originTLSFlags struct {
	tlsconfig.Client
}

func (f *originTLSFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.CAFile, "origin-ca", "", "with an https:// cache-tier origin: PEM CA file to trust for the cache nodes (default: system roots)")
	fs.StringVar(&f.CertFile, "origin-cert", "", "with an https:// cache-tier origin: PEM client certificate for nodes that require mutual TLS (with -origin-key)")
	fs.StringVar(&f.KeyFile, "origin-key", "", "PEM private key file of -origin-cert")
}

// config returns the TLS config of the cache-tier client, nil when no flag
// is set (the defaults).
func (f *originTLSFlags) config() (*tls.Config, error) {
	if !f.Enabled() {
		return nil, nil
	}
	c, err := f.Config()
	if err != nil {
		return nil, usageError{fmt.Errorf("-origin-ca/-origin-cert/-origin-key: %w", err)}
	}
	return c, nil
}

// newServer returns an http.Server for h with the limits every listener
// has: bounded header size and header read time, idle connections closed,
// its own errors logged at debug level.
func newServer(h http.Handler, tlsCfg *tls.Config, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}

// newAdminServer is newServer for an admin listener, which also bounds the
// time to read a whole request and to write a response.
func newAdminServer(h http.Handler, tlsCfg *tls.Config, log *slog.Logger) *http.Server {
	srv := newServer(h, tlsCfg, log)
	srv.ReadTimeout = adminReadTimeout
	srv.WriteTimeout = adminReadTimeout + adminWriteTimeout
	return srv
}

// apiMinRate is the slowest transfer rate, in bytes per second, an API
// client is allowed: the time to read a whole request and to write a
// response are sized by the largest body at this rate.
const apiMinRate = 256 << 10

// apiTimeouts returns the ReadTimeout and WriteTimeout of an API listener
// whose largest request body is maxBody bytes and largest response maxResp
// bytes. The write timeout runs from the end of the request headers, so it
// covers reading the body, the handler's work and the response.
func apiTimeouts(maxBody, maxResp int64) (read, write time.Duration) {
	at := func(n int64) time.Duration { return time.Duration(n/apiMinRate) * time.Second }
	read = readHeaderTimeout + apiGrace + at(maxBody)
	return read, read + apiGrace + at(maxResp)
}

// newAPIServer is newServer for an API listener (cache node, publisher)
// whose largest request body is maxBody and largest response maxResp: it
// also bounds the time to read a whole request and to write a response, so
// a slow or stalled client cannot hold a connection forever.
func newAPIServer(h http.Handler, tlsCfg *tls.Config, log *slog.Logger, maxBody, maxResp int64) *http.Server {
	srv := newServer(h, tlsCfg, log)
	srv.ReadTimeout, srv.WriteTimeout = apiTimeouts(maxBody, maxResp)
	return srv
}

// listenAndServe listens on addr and serves srv on it in the background,
// over TLS when srv.TLSConfig is set. It returns the bound address, or the
// listen error at once; errc receives the error that stops serving.
func listenAndServe(srv *http.Server, addr string, errc chan<- error) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	go func() {
		var err error
		if srv.TLSConfig != nil {
			err = srv.ServeTLS(ln, "", "")
		} else {
			err = srv.Serve(ln)
		}
		if errc != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	return ln.Addr(), nil
}

// scheme is "https" for a TLS listener, else "http".
func scheme(c *tls.Config) string {
	if c != nil {
		return "https"
	}
	return "http"
}
