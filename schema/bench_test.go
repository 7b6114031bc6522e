package schema_test

import (
	"encoding/json"
	"testing"

	"github.com/dataplane/dataplane/schema"
)

var benchRoute = []byte(`{"deployment_id":"dep_1","upstreams":["http://10.0.0.1:8080","http://10.0.0.2:8080"],"require_key":true,"keyspace":"ks"}`)

// BenchmarkDecodeRoute compares the strict decoder with encoding/json on a
// typical route; the gateway parses a route once per version (memoized).
func BenchmarkDecodeRoute(b *testing.B) {
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var r schema.Route
			if err := json.Unmarshal(benchRoute, &r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("strict", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var r schema.Route
			if err := schema.Unmarshal(benchRoute, &r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ParseRoute", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := schema.ParseRoute(benchRoute); err != nil {
				b.Fatal(err)
			}
		}
	})
}
