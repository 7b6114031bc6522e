package cachenode

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the node's own collectors; the cache registers its own.
type metrics struct {
	requests *prometheus.CounterVec // route, code
	stale    prometheus.Counter
	// logShared counts log reads answered by another request's origin read.
	logShared prometheus.Counter
	// partsShared counts checkpoint and proof reads answered by another
	// request's origin read.
	partsShared prometheus.Counter
}

func newMetrics() *metrics {
	return &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "dataplane", Subsystem: "cachenode", Name: "requests_total",
			Help: "Requests answered, by route and HTTP status (304: not modified).",
		}, []string{"route", "code"}),
		stale: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "dataplane", Subsystem: "cachenode", Name: "stale_responses_total",
			Help: "Record reads answered with a stale value (X-Dataplane-Stale: 1).",
		}),
		logShared: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "dataplane", Subsystem: "cachenode", Name: "log_reads_shared_total",
			Help: "GET /v1/log requests answered from another request's origin log read (Config.Timing.LogTailTTL).",
		}),
		partsShared: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "dataplane", Subsystem: "cachenode", Name: "checkpoint_reads_shared_total",
			Help: "Checkpoint and snapshot proof reads answered from another request's origin read (Config.Timing: LogTailTTL, CheckpointLifetime/10).",
		}),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.requests, m.stale, m.logShared, m.partsShared}
}

func (m *metrics) register(r prometheus.Registerer) error {
	var done []prometheus.Collector
	for _, c := range m.collectors() {
		if err := r.Register(c); err != nil {
			for _, d := range done {
				r.Unregister(d)
			}
			return fmt.Errorf("cachenode: register metrics: %w", err)
		}
		done = append(done, c)
	}
	return nil
}

func (m *metrics) unregister(r prometheus.Registerer) {
	for _, c := range m.collectors() {
		r.Unregister(c)
	}
}

// instrument counts h's answers under route.
func (s *Server) instrument(route string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w}
		h.ServeHTTP(rec, r)
		code := rec.code
		if code == 0 {
			code = http.StatusOK
		}
		s.metrics.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	})
}

// statusRecorder remembers the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
