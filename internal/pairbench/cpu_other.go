//go:build !linux

package pairbench

import "time"

// threadCPU falls back to the wall clock where the thread's CPU clock is
// not read: the ratios then measure the scheduler's share too.
func threadCPU() int64 { return time.Now().UnixNano() }
