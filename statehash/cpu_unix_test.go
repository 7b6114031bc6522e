//go:build unix

package statehash_test

import (
	"syscall"
	"time"
)

// cpuTime is the CPU time (user and system, every thread) this process
// has used: benchmarks report it beside wall time, which a loaded machine
// inflates.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
