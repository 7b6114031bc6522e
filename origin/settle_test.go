package origin_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dataplane/dataplane/origin"
)

func TestTimingValidate(t *testing.T) {
	good := origin.DefaultTiming()
	cases := []struct {
		name string
		edit func(*origin.Timing)
		want string // "" means valid
	}{
		{"defaults", func(*origin.Timing) {}, ""},
		{"wan", func(t *origin.Timing) { *t = origin.WANTiming() }, ""},
		{"local", func(t *origin.Timing) { *t = origin.LocalTiming() }, ""},
		{"never trim", func(t *origin.Timing) { t.LogRetention = 0 }, ""},
		{"settle exactly budget plus skew plus tail", func(t *origin.Timing) { t.LogSettle = 1500 * time.Millisecond }, ""},
		{"no budget", func(t *origin.Timing) { t.PublishBudget = 0 }, "PublishBudget=0s must be positive"},
		{"negative skew", func(t *origin.Timing) { t.ClockSkew = -1 }, "ClockSkew=-1ns must not be negative"},
		{"settle below budget plus skew", func(t *origin.Timing) { t.LogSettle = time.Second },
			"LogSettle=1s < PublishBudget=1s + ClockSkew=250ms + ReplicaLag=0s + LogTailTTL=250ms"},
		{"snapshot lag below budget plus skew", func(t *origin.Timing) { t.SnapshotLag = time.Second }, "SnapshotLag=1s < PublishBudget=1s + ClockSkew=250ms"},
		{"retention trims inside two settle windows", func(t *origin.Timing) {
			t.SnapshotLag, t.LogSettle, t.LogRetention = 2*time.Second, 2*time.Second, time.Second
		}, "SnapshotLag=2s + LogRetention=1s < 2 * LogSettle=2s"},
		{"negative retention", func(t *origin.Timing) { t.LogRetention = -1 }, "LogRetention=-1ns"},
		{"replica lag covered", func(t *origin.Timing) { t.ReplicaLag = 500 * time.Millisecond }, ""},
		{"replica lag past settle", func(t *origin.Timing) { t.ReplicaLag = time.Second }, "ReplicaLag=1s"},
		{"log tail past settle", func(t *origin.Timing) { t.LogTailTTL = time.Second }, "LogTailTTL=1s: readers would move"},
		{"short checkpoint lifetime", func(t *origin.Timing) { t.CheckpointLifetime = 2 * time.Second }, "CheckpointLifetime=2s <= 2 * (PublishBudget=1s + ClockSkew=250ms)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tm := good
			c.edit(&tm)
			err := tm.Validate()
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("Validate(%+v) = %v, want nil", tm, err)
			case c.want != "" && (!errors.Is(err, origin.ErrTiming) || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("Validate(%+v) = %v, want an error naming %q", tm, err, c.want)
			}
		})
	}
}

// TestMaxFutureSkew: nodes accept versions ClockSkew plus the origin Date's
// uncertainty ahead of their clock (a publisher passes its clock check that
// far ahead of the origin), and at least 5 s.
func TestMaxFutureSkew(t *testing.T) {
	for _, c := range []struct {
		skew, want time.Duration
	}{
		{origin.DefaultTiming().ClockSkew, 5 * time.Second},
		{origin.LocalTiming().ClockSkew, 5 * time.Second},
		{0, 5 * time.Second},
		{4 * time.Second, 6 * time.Second},
	} {
		if got := (origin.Timing{ClockSkew: c.skew}).MaxFutureSkew(); got != c.want {
			t.Errorf("ClockSkew=%v: MaxFutureSkew() = %v, want %v", c.skew, got, c.want)
		}
	}
}
