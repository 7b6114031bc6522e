package bench

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/dataplane/dataplane/internal/tick"
)

// Bar is a Progress that draws a one-line progress bar on a terminal (or
// any writer): the option running, its phase, and the share of the run's
// planned time gone. It is hand-written rather than a dependency: it needs
// one line of output and a carriage return, and the main module should not
// grow dependencies for a benchmark's cosmetics.
type Bar struct {
	w       io.Writer
	planned time.Duration // the whole run

	mu      sync.Mutex // guards the fields below
	done    time.Duration
	option  string
	phase   string
	started time.Time
	phaseD  time.Duration
	stop    chan struct{}
	stopped bool
}

// NewBar returns a bar for a run of cfg on w, redrawn four times a second
// until Close.
func NewBar(w io.Writer, cfg Config) *Bar {
	b := &Bar{w: w, planned: Planned(cfg), stop: make(chan struct{})}
	go b.loop()
	return b
}

// Planned is the run's expected duration: every option's phases plus a few
// seconds of start-up and checks each.
func Planned(cfg Config) time.Duration {
	var t time.Duration
	for _, o := range cfg.Options {
		t += 3*time.Second + warmupFor(&cfg, o) + cfg.Steady + 4*cfg.Fault + 4*cfg.Recover + settleFor(&cfg, o) + 2*time.Second
	}
	return t
}

// Phase implements Progress.
func (b *Bar) Phase(option string, i, n int, phase string, d time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.started.IsZero() {
		b.done += min(time.Since(b.started), b.phaseD)
	}
	b.option = fmt.Sprintf("%d/%d %s", i+1, n, option)
	b.phase, b.started, b.phaseD = phase, time.Now(), d
}

func (b *Bar) loop() {
	tick.Every(b.stop, 250*time.Millisecond, b.draw)
}

func (b *Bar) draw() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped || b.option == "" {
		return
	}
	done := b.done + min(time.Since(b.started), b.phaseD)
	frac := 0.0
	if b.planned > 0 {
		frac = min(1, float64(done)/float64(b.planned))
	}
	const width = 30
	fill := int(frac * width)
	fmt.Fprintf(b.w, "\r[%s%s] %3.0f%%  option %-14s %-18s", strings.Repeat("#", fill), strings.Repeat(".", width-fill), 100*frac, b.option, b.phase)
}

// Close stops redrawing and ends the line.
func (b *Bar) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped {
		return
	}
	b.stopped = true
	close(b.stop)
	if b.option != "" {
		fmt.Fprintln(b.w)
	}
}
