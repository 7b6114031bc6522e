package publisher

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dataplane/dataplane/origin"
)

// ErrClockOffset means this host's clock is further from the origin's than
// Config.Timing.ClockSkew allows: the write was refused before it took a
// version, and nothing was written.
var ErrClockOffset = errors.New("publisher: this host's clock is too far from the origin's")

// clockRecheck is how long a clock found within bounds is trusted before the
// origin's time is read again.
const clockRecheck = 30 * time.Second

// dateResolution is how far behind the origin's clock its time may read
// (origin.ClockDateUncertainty); the check counts it in the clock's favour.
const dateResolution = origin.ClockDateUncertainty

// clockCheck remembers the last good reading, so that only one write every
// clockRecheck pays for a read of the origin's time.
type clockCheck struct {
	mu      sync.Mutex // held across the origin read: one reading at a time
	okUntil time.Time  // monotonic local time until which the clock is trusted
	failLog time.Time  // when a failed reading was last logged
}

// checkClock returns an error wrapping ErrClockOffset when the origin tells
// its time and this host's clock is provably more than Timing.ClockSkew
// away from it (readers assume clocks within ClockSkew). An origin that cannot tell its time, or fails to, passes: the
// write that follows finds out whether the origin is there at all.
func (p *Publisher) checkClock(ctx context.Context) error {
	oc, ok := p.store.(origin.Clock)
	if !ok || p.cfg.noClockCheck {
		return nil
	}
	cc := &p.clockCheck
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if time.Now().Before(cc.okUntil) {
		return nil
	}
	sent := p.clock.Wall()
	server, err := oc.ServerTime(ctx)
	received := p.clock.Wall()
	if err != nil {
		if now := time.Now(); now.Sub(cc.failLog) > time.Minute {
			cc.failLog = now
			p.log.Warn("could not read the origin's time to check this host's clock; writing anyway", "err", err)
		}
		return nil
	}
	if err := offsetError(sent, received, server, p.cfg.Timing.ClockSkew); err != nil {
		p.m.clockRefused.Inc()
		return err
	}
	cc.okUntil = time.Now().Add(clockRecheck)
	return nil
}

// offsetError compares the local times a request was sent and answered with
// the origin's time in the answer (at most dateResolution behind): the
// origin's true time when it answered lies in [server, server+resolution),
// and the local time then in [sent, received]. It reports an offset only
// when every combination is beyond max.
func offsetError(sent, received, server time.Time, max time.Duration) error {
	const fix = "fix this host's clock (NTP); Timing.ClockSkew (publish and sync: -clock-skew) sets the bound"
	if ahead := sent.Sub(server.Add(dateResolution)); ahead > max {
		return fmt.Errorf("%w: at least %v ahead (local %s, origin %s; bound %v): every node would refuse its versions, so nothing was written; %s",
			ErrClockOffset, ahead.Round(time.Millisecond), sent.UTC().Format(time.RFC3339), server.UTC().Format(time.RFC3339), max, fix)
	}
	if behind := server.Sub(received); behind > max {
		return fmt.Errorf("%w: at least %v behind (local %s, origin %s; bound %v): its versions would land below every log reader's cursor, so nothing was written; %s",
			ErrClockOffset, behind.Round(time.Millisecond), received.UTC().Format(time.RFC3339), server.UTC().Format(time.RFC3339), max, fix)
	}
	return nil
}
