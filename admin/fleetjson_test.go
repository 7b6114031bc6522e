package admin

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane/gossip"
)

// TestFleetJSONVersionsAreStrings: /debug/fleet.json sends every version and
// cursor as its 16-hex-digit string, as the watch stream and the publisher
// do; as JSON numbers, versions (above 2^53) were rounded by JavaScript.
func TestFleetJSONVersionsAreStrings(t *testing.T) {
	fv := testFleet()
	srv := httptest.NewServer(Handler(Config{Gatherer: prometheus.NewRegistry(), Token: "s3cret", Fleet: func() gossip.FleetView { return fv }}))
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL+"/debug/fleet.json", nil)
	req.Header.Set("Authorization", "Bearer s3cret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var d struct {
		Members []struct {
			Cursor  any `json:"cursor"`
			Applied []struct {
				Version any `json:"version"`
			} `json:"applied"`
		} `json:"members"`
		Changes []struct {
			Version any `json:"version"`
		} `json:"changes"`
		Newest map[string]any `json:"newest"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		t.Fatal(err)
	}
	m := fv.Members[0]
	if uint64(m.Cursor) <= 1<<53 {
		t.Fatalf("test cursor %d is not above 2^53", uint64(m.Cursor))
	}
	if got := d.Members[0].Cursor; got != m.Cursor.String() {
		t.Errorf("cursor: %#v, want the string %q", got, m.Cursor.String())
	}
	if got := d.Members[0].Applied[0].Version; got != m.Applied[0].Version.String() {
		t.Errorf("applied version: %#v, want %q", got, m.Applied[0].Version.String())
	}
	if got := d.Changes[0].Version; got != fv.Changes[0].Version.String() {
		t.Errorf("change version: %#v, want %q", got, fv.Changes[0].Version.String())
	}
	if got := d.Newest["routes"]; got != m.Applied[0].Version.String() {
		t.Errorf("newest: %#v, want %q", got, m.Applied[0].Version.String())
	}
}
