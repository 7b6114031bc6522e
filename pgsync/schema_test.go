package pgsync_test

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane/origin/mem"
	"github.com/dataplane/dataplane/publisher"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/schema"
)

// TestParksMalformedValues: outbox rows whose values break their
// namespace's schema are parked (done, with an error naming the field) and
// never written; the key keeps its last good value and the rows after them
// are published. It holds whether the syncer's own schemas refuse the row
// or only the Publisher's do.
func TestParksMalformedValues(t *testing.T) {
	hash := strings.Repeat("7e", 32)
	const good = `{"upstreams":["http://10.0.0.1:80"],"require_key":true,"keyspace":"ks"}`
	rows := []struct {
		ns, key, value string
		field          string // "" = published
	}{
		{"routes", "a.example.com", good, ""},
		{"routes", "a.example.com", `{"upstreams":["http://10.0.0.1:80"],"require_key":true,"keyspace":"ks","require_key":false}`, `"require_key"`},
		{"routes", "a.example.com", `{not json`, "bad JSON"},
		{"routes", "a.example.com", `{"upstreams":[]}`, `"upstreams"`},
		{"keys", "ks/" + hash, `{"enabled":true}`, `"key_id"`},
		{"keys", "ks/" + hash, `{"key_id":"k1","enabled":true,"Enabled":false}`, `"Enabled"`},
		{"routes", "b.example.com", good, ""},
	}
	for _, where := range []string{"syncer", "publisher"} {
		t.Run(where, func(t *testing.T) {
			pool, dsn := newDB(t)
			store := mem.New()
			clock := record.NewClock(nil)
			pcfg := publisher.DefaultConfig() // schemas: routes and keys
			pcfg.Clock, pcfg.Logger = clock, testLogger()
			pub, err := publisher.New(store, pcfg)
			if err != nil {
				t.Fatal(err)
			}
			reg := prometheus.NewRegistry()
			cfg := syncerCfg(pub, clock, reg)
			cfg.DSN = dsn
			cfg.Schemas = nil // the default: routes and keys
			if where == "publisher" {
				cfg.Schemas = schema.NewRegistry() // only the Publisher checks
			}
			for _, r := range rows {
				if _, err := pool.Exec(testCtx(t), `INSERT INTO dataplane_outbox (namespace, key, value) VALUES ($1, $2, $3)`, r.ns, r.key, []byte(r.value)); err != nil {
					t.Fatal(err)
				}
			}
			runSyncer(t, cfg)
			waitAllPublished(t, pool, 30*time.Second)

			got := readOutbox(t, pool)
			if len(got) != len(rows) {
				t.Fatalf("%d outbox rows, want %d", len(got), len(rows))
			}
			parked := 0
			for i, r := range rows {
				g := got[i]
				switch {
				case r.field == "" && g.err != nil:
					t.Errorf("row %d (%s/%s) parked: %s", i, r.ns, r.key, *g.err)
				case r.field != "" && (g.err == nil || !strings.Contains(*g.err, r.field)):
					t.Errorf("row %d (%s/%s): error %v, want one naming %s", i, r.ns, r.key, g.err, r.field)
				case r.field != "":
					parked++
				}
			}
			if v := metricValue(t, reg, "dataplane_pgsync_rejected_total"); v != float64(parked) {
				t.Errorf("rejected_total = %v, want %d", v, parked)
			}
			for _, host := range []string{"a.example.com", "b.example.com"} {
				rec, err := store.Get(testCtx(t), "routes", host, 0)
				if err != nil || string(rec.Value) != good {
					t.Errorf("routes/%s = %s, %v; want the good value", host, rec.Value, err)
				}
			}
			if _, err := store.Get(testCtx(t), "keys", "ks/"+hash, 0); err == nil {
				t.Error("a parked key row was written")
			}
		})
	}
}
