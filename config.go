package dataplane

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/dataplane/dataplane/cache"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/record"
)

// followBatch is the most changes the node asks of the change log in one
// read.
const followBatch = 1000

// Defaults of the Config fields whose zero value means "the default".
const (
	defaultLocalSnapshotInterval = 30 * time.Second
	defaultWarmTimeout           = 10 * time.Second
)

// withDefaults returns c with every zero field that has a documented
// default set to it.
func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Namespaces == nil {
		c.Namespaces = []string{"routes", "keys"}
	}
	if c.LocalSnapshotInterval == 0 {
		c.LocalSnapshotInterval = defaultLocalSnapshotInterval
	}
	if c.WarmTimeout == 0 {
		c.WarmTimeout = defaultWarmTimeout
	}
	if c.Timing == (origin.Timing{}) {
		c.Timing = origin.DefaultTiming()
	}
	if c.Cache.IsZero() {
		c.Cache = cache.DefaultConfig()
	}
	return c
}

// ErrConfig is wrapped by every error Config.Validate (and so Open)
// returns for a bad Config; a timing error also wraps origin.ErrTiming.
var ErrConfig = errors.New("dataplane: invalid Config")

// Validate reports, in one error wrapping ErrConfig, every setting of c
// that Open would refuse, after filling the defaults of zero fields. The
// timing rules, each reported with the constants, their values and the
// rule:
//   - origin.Timing.Validate's, which publishers check too;
//   - Timing.LogInterval is positive: the node follows the change log, with
//     or without gossip;
//   - for each namespace that fails closed (Staleness merged over
//     DefaultStaleness) with D = FailClosedAfter, on a node with Gossip:
//     D > LogInterval + LogSettle, since with no change flowing a log read
//     is the only proof and it is that old just before the next one, so a
//     shorter D fails closed between reads with the origin up (a TTL-only
//     node also counts its origin reads as proof, see Policy);
//   - and, on a node with a Verifier, for each such namespace it holds
//     whole (Namespaces), when publishers issue checkpoints
//     (Timing.CheckpointLifetime > 0): D > CheckpointLifetime/2 +
//     LogInterval + LogSettle, since there only a checkpoint match proves
//     the namespace current, a namespace that does not change gets a new
//     checkpoint only before half of the lifetime has passed, its version
//     trails its issue by LogSettle, and it reaches a TTL-only node with
//     the next log read.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.Origin == nil {
		errs = append(errs, errors.New("Origin is required"))
	}
	for _, ns := range c.Namespaces {
		if err := record.ValidateNamespace(ns); err != nil {
			errs = append(errs, fmt.Errorf("Namespaces: %w", err))
		}
	}
	if c.LocalSnapshotInterval < 0 {
		errs = append(errs, fmt.Errorf("LocalSnapshotInterval=%s must not be negative", c.LocalSnapshotInterval))
	}
	if c.WarmTimeout < 0 {
		errs = append(errs, fmt.Errorf("WarmTimeout=%s must not be negative", c.WarmTimeout))
	}
	if err := c.validateTiming(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return nil
}

// validateTiming checks Timing alone and against the namespaces' fail-closed
// bounds, in one error wrapping origin.ErrTiming.
func (c Config) validateTiming() error {
	t := c.Timing
	var errs []error
	if err := t.Validate(); err != nil {
		// Its rules, without its ErrTiming prefix: wrapped once below.
		if u, ok := err.(interface{ Unwrap() []error }); ok && len(u.Unwrap()) == 2 {
			err = u.Unwrap()[1]
		}
		errs = append(errs, err)
	}
	if t.LogInterval <= 0 {
		errs = append(errs, fmt.Errorf("LogInterval=%s must be positive: the node follows the change log", t.LogInterval))
	}
	policies := DefaultStaleness()
	for ns, p := range c.Staleness {
		policies[ns] = p
	}
	names := make([]string, 0, len(policies))
	for ns := range policies {
		names = append(names, ns)
	}
	slices.Sort(names)
	for _, ns := range names {
		p := policies[ns]
		if !p.FailsClosed() {
			continue
		}
		d := p.FailClosedAfter
		if c.Gossip != nil && d <= t.LogInterval+t.LogSettle {
			errs = append(errs, fmt.Errorf("Staleness[%q].FailClosedAfter=%s <= LogInterval=%s + LogSettle=%s: with no change flowing, a log read is the only proof and is that old before the next one, so reads would fail closed with the origin up",
				ns, d, t.LogInterval, t.LogSettle))
		}
		if c.Verifier != nil && slices.Contains(c.Namespaces, ns) && t.CheckpointLifetime > 0 && d <= t.CheckpointLifetime/2+t.LogInterval+t.LogSettle {
			errs = append(errs, fmt.Errorf("Staleness[%q].FailClosedAfter=%s <= CheckpointLifetime/2=%s + LogInterval=%s + LogSettle=%s: a namespace that does not change is proven by a checkpoint renewed only at half its lifetime, so reads would fail closed with the origin up",
				ns, d, t.CheckpointLifetime/2, t.LogInterval, t.LogSettle))
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("Timing: %w: %w", origin.ErrTiming, errors.Join(errs...))
}
