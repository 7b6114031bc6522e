package main

import (
	"log/slog"
	"net/http"
	"testing"
	"time"
)

// TestAPITimeouts: an API listener bounds reading a whole request and
// writing a response, sized by its largest bodies at apiMinRate.
func TestAPITimeouts(t *testing.T) {
	for _, tc := range []struct {
		name             string
		maxBody, maxResp int64
		read, write      time.Duration
	}{
		{"small", 1 << 10, 1 << 10, readHeaderTimeout + apiGrace, readHeaderTimeout + 2*apiGrace},
		{"cache node snapshots", 256 << 20, 256 << 20, readHeaderTimeout + apiGrace + 1024*time.Second, readHeaderTimeout + 2*apiGrace + 2048*time.Second},
		{"writes only", 64 << 20, 0, readHeaderTimeout + apiGrace + 256*time.Second, readHeaderTimeout + 2*apiGrace + 256*time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newAPIServer(http.NotFoundHandler(), nil, slog.New(slog.DiscardHandler), tc.maxBody, tc.maxResp)
			if srv.ReadTimeout != tc.read || srv.WriteTimeout != tc.write || srv.ReadHeaderTimeout != readHeaderTimeout {
				t.Fatalf("read %v write %v header %v, want %v %v %v", srv.ReadTimeout, srv.WriteTimeout, srv.ReadHeaderTimeout, tc.read, tc.write, readHeaderTimeout)
			}
		})
	}
	if adm := newAdminServer(http.NotFoundHandler(), nil, slog.New(slog.DiscardHandler)); adm.ReadTimeout == 0 || adm.WriteTimeout <= adm.ReadTimeout {
		t.Fatalf("admin server: read %v write %v", adm.ReadTimeout, adm.WriteTimeout)
	}
}
