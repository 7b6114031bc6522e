package publisher

import (
	"errors"
	"testing"
	"time"
)

// TestOffsetError: the check refuses only an offset beyond the bound in
// every reading of a Date (dateResolution behind the origin's clock at
// most) and a round trip.
func TestOffsetError(t *testing.T) {
	server := time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)
	const max = 2 * time.Second
	for _, tc := range []struct {
		name           string
		sent, received time.Duration // local times, relative to server
		refused        bool
	}{
		{"in step", 100 * time.Millisecond, 200 * time.Millisecond, false},
		{"ahead within bound plus resolution", 3900 * time.Millisecond, 4 * time.Second, false},
		{"ahead beyond", 4100 * time.Millisecond, 4200 * time.Millisecond, true},
		{"an hour ahead", time.Hour, time.Hour + time.Second, true},
		{"behind within bound", -2 * time.Second, -1900 * time.Millisecond, false},
		{"behind beyond", -2200 * time.Millisecond, -2100 * time.Millisecond, true},
		{"slow round trip hides the offset", -10 * time.Second, 10 * time.Second, false},
	} {
		err := offsetError(server.Add(tc.sent), server.Add(tc.received), server, max)
		if got := errors.Is(err, ErrClockOffset); got != tc.refused {
			t.Errorf("%s: refused = %v (%v), want %v", tc.name, got, err, tc.refused)
		}
	}
}
