package origin_test

import (
	"strings"
	"testing"
	"time"

	"github.com/dataplane/dataplane/origin"
)

func TestTimingValidate(t *testing.T) {
	good := origin.Timing{
		PublishBudget: time.Second, ClockSkew: 250 * time.Millisecond,
		LogSettle: 2 * time.Second, SnapshotLag: 5 * time.Second, LogRetention: 24 * time.Hour,
	}
	cases := []struct {
		name string
		edit func(*origin.Timing)
		want string // "" means valid
	}{
		{"defaults", func(*origin.Timing) {}, ""},
		{"never trim", func(t *origin.Timing) { t.LogRetention = 0 }, ""},
		{"settle exactly budget plus skew", func(t *origin.Timing) { t.LogSettle = 1250 * time.Millisecond }, ""},
		{"no budget", func(t *origin.Timing) { t.PublishBudget = 0 }, "publish budget"},
		{"negative skew", func(t *origin.Timing) { t.ClockSkew = -1 }, "clock skew"},
		{"settle below budget plus skew", func(t *origin.Timing) { t.LogSettle = time.Second }, "log settle"},
		{"snapshot lag below budget plus skew", func(t *origin.Timing) { t.SnapshotLag = time.Second }, "snapshot lag"},
		{"retention trims inside two settle windows", func(t *origin.Timing) {
			t.SnapshotLag, t.LogSettle, t.LogRetention = 2*time.Second, 2*time.Second, time.Second
		}, "log retention"},
		{"negative retention", func(t *origin.Timing) { t.LogRetention = -1 }, "log retention"},
		{"replica lag covered", func(t *origin.Timing) { t.ReplicaLag = 750 * time.Millisecond }, ""},
		{"replica lag past settle", func(t *origin.Timing) { t.ReplicaLag = time.Second }, "replica lag"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tm := good
			c.edit(&tm)
			err := tm.Validate()
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("Validate(%+v) = %v, want nil", tm, err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("Validate(%+v) = %v, want an error naming %q", tm, err, c.want)
			}
		})
	}
}
