// Package testscale stretches the deadlines and protocol timers of tests on
// a busy machine, so that a test waiting on a condition fails only when the
// condition does not come, not when the machine is slow. A test states the
// time it needs on an idle machine and waits Duration of it.
//
// The factor is DATAPLANE_TEST_SCALE when set (a number, at least 1), else
// the machine's load per core: the 1-minute load average over the number of
// CPUs, at least 1 and at most MaxFactor. Two CPU-bound processes per core
// (scripts/busy.sh) give about 2; the race detector's own slowdown is not
// counted (test timings are stated for -race).
package testscale

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// MaxFactor bounds the automatic factor, so that a test that would fail
// anyway still fails within a bounded time.
const MaxFactor = 8

// Env is the variable that fixes the factor.
const Env = "DATAPLANE_TEST_SCALE"

// Factor returns the current slow-down factor, at least 1.
func Factor() float64 {
	if s := os.Getenv(Env); s != "" {
		if f, err := strconv.ParseFloat(s, 64); err == nil && f >= 1 {
			return f
		}
	}
	return min(max(loadPerCPU(), 1), MaxFactor)
}

// Duration returns d stretched by Factor.
func Duration(d time.Duration) time.Duration {
	return time.Duration(float64(d) * Factor())
}

// loadPerCPU reads the 1-minute load average per CPU; 0 where the system
// does not tell (not Linux).
func loadPerCPU() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	load, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0
	}
	return load / float64(runtime.NumCPU())
}
