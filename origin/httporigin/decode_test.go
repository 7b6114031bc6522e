package httporigin

import (
	"errors"
	"testing"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/httporigin/wire"
	"github.com/dataplane/dataplane/record"
)

// sentinels are the errors a decoder may wrap; anything else is a bug.
var sentinels = []error{
	record.ErrCorrupt, record.ErrInvalid, origin.ErrNotFound, origin.ErrNotModified,
	origin.ErrConflict, origin.ErrLogTruncated, origin.ErrUnavailable, ErrUnauthorized,
}

func checkSentinel(t *testing.T, what string, err error) {
	t.Helper()
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return
		}
	}
	t.Fatalf("%s: error %v wraps no sentinel", what, err)
}

// FuzzDecodeResponse: whatever a node (or anything posing as one) answers,
// the decoders never panic, return only valid results for the key asked
// about, and otherwise an error wrapping a sentinel.
func FuzzDecodeResponse(f *testing.F) {
	rec := record.Record{Namespace: "routes", Key: "api.example.com", Value: []byte(`{"u":1}`), Version: 0x20}
	rb, _ := record.Marshal(rec)
	tomb, _ := record.Marshal(record.Record{Namespace: "routes", Key: "api.example.com", Version: 0x30, Tombstone: true})
	sb, _ := record.MarshalSnapshot(record.Snapshot{Namespace: "routes", Version: 0x40, Records: []record.Record{rec}})
	f.Add(200, wire.ETag(0x20), uint64(0), rb)
	f.Add(200, wire.ETag(0x30), uint64(0x20), tomb)
	f.Add(200, "", uint64(0x20), rb)
	f.Add(304, wire.ETag(0x20), uint64(0x20), []byte(nil))
	f.Add(200, "", uint64(0), sb)
	f.Add(200, "", uint64(0), []byte(`{"changes":[{"namespace":"routes","key":"a","version":"0000000000000021"},{"namespace":"keys","key":"k/1","version":"22","tombstone":true}]}`))
	f.Add(404, "", uint64(0), []byte(`{"error":"routes/x: not found","code":"not_found"}`))
	f.Add(409, "", uint64(0), []byte(`{"error":"conflict","code":"conflict"}`))
	f.Add(410, "", uint64(0), []byte(`{"error":"trimmed","code":"truncated"}`))
	f.Add(502, "", uint64(0), []byte(`{"error":"corrupt encoding","code":"corrupt"}`))
	f.Add(503, "", uint64(0), []byte(`{"error":"origin down","code":"unavailable"}`))
	f.Add(500, "", uint64(0), []byte("<html>oops</html>"))
	f.Add(204, "", uint64(0), []byte(nil))
	f.Fuzz(func(t *testing.T, status int, etag string, ifNewer uint64, body []byte) {
		const ns, key = "routes", "api.example.com"
		got, err := decodeGet(ns, key, record.Version(ifNewer), status, etag, body)
		if err == nil {
			if verr := got.Validate(); verr != nil {
				t.Fatalf("decodeGet returned an invalid record: %v", verr)
			}
			if got.Namespace != ns || got.Key != key {
				t.Fatalf("decodeGet returned %s/%s for %s/%s", got.Namespace, got.Key, ns, key)
			}
			if ifNewer != 0 && uint64(got.Version) <= ifNewer {
				t.Fatalf("decodeGet returned version %s, not newer than %x", got.Version, ifNewer)
			}
		} else {
			checkSentinel(t, "decodeGet", err)
		}

		snap, err := decodeSnapshot(ns, status, body)
		if err == nil {
			if _, merr := record.MarshalSnapshot(snap); merr != nil || snap.Namespace != ns {
				t.Fatalf("decodeSnapshot returned a bad snapshot of %q: %v", snap.Namespace, merr)
			}
		} else {
			checkSentinel(t, "decodeSnapshot", err)
		}

		cs, err := decodeLog(0x10, 5, status, body)
		if err == nil {
			if len(cs) > 5 {
				t.Fatalf("decodeLog returned %d changes, limit 5", len(cs))
			}
			for i, c := range cs {
				if origin.CheckChange(c) != nil || c.Version <= 0x10 || i > 0 && c.Version < cs[i-1].Version {
					t.Fatalf("decodeLog returned bad change %d: %+v", i, c)
				}
			}
		} else {
			checkSentinel(t, "decodeLog", err)
		}

		if b, err := decodePart(ns, "checkpoint", 1<<10, status, body); err == nil {
			if status != 200 || len(b) > 1<<10 {
				t.Fatalf("decodePart accepted status %d with %d bytes (limit 1024)", status, len(b))
			}
		} else {
			checkSentinel(t, "decodePart", err)
		}

		if err := decodeDone(status, body); err != nil {
			checkSentinel(t, "decodeDone", err)
		} else if status < 200 || status > 299 {
			t.Fatalf("decodeDone accepted status %d", status)
		}
	})
}

// Each error code maps to its sentinel, and only node failures fail over.
func TestDecodeError(t *testing.T) {
	for _, tc := range []struct {
		status   int
		body     string
		want     error
		failover bool
		sick     bool
	}{
		{404, `{"error":"x","code":"not_found"}`, origin.ErrNotFound, false, false},
		{409, `{"error":"x","code":"conflict"}`, origin.ErrConflict, false, false},
		{410, `{"error":"x","code":"truncated"}`, origin.ErrLogTruncated, false, false},
		{400, `{"error":"x","code":"invalid"}`, record.ErrInvalid, false, false},
		{413, `{"error":"x","code":"too_large"}`, record.ErrInvalid, false, false},
		{502, `{"error":"x","code":"corrupt"}`, record.ErrCorrupt, false, false},
		{401, `{"error":"missing or wrong admin token"}`, ErrUnauthorized, false, false},
		{403, `{"error":"endpoint disabled"}`, ErrUnauthorized, false, false},
		{503, `{"error":"x","code":"unavailable"}`, origin.ErrUnavailable, true, false},
		{500, `boom`, origin.ErrUnavailable, true, true},
		{404, `404 page not found`, origin.ErrUnavailable, true, true},
		{302, ``, origin.ErrUnavailable, true, true},
	} {
		err := decodeError(tc.status, []byte(tc.body))
		if !errors.Is(err, tc.want) {
			t.Errorf("%d %s: %v, want %v", tc.status, tc.body, err, tc.want)
		}
		var ne *nodeError
		if errors.As(err, &ne) != tc.failover || tc.failover && ne.sick != tc.sick {
			t.Errorf("%d %s: node error %+v, want failover %v sick %v", tc.status, tc.body, ne, tc.failover, tc.sick)
		}
	}
}
