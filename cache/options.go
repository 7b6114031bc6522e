package cache

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane/record"
)

// Window says how long a value the origin confirmed stays usable.
//
// For Fresh after a confirmation, the cached value is served without asking
// the origin. For the Stale time after that, it is still served at once
// (marked stale) while one background refresh asks the origin. Past
// Fresh+Stale a read waits for the origin, and falls back to the held value
// (marked stale) if the origin fails: windows decide when to block, never
// when to forget. Only the size bound (Options.MaxBytes) drops entries.
type Window struct {
	// Fresh is how long a confirmed value is served without asking the
	// origin. Must be positive.
	Fresh time.Duration
	// Stale is how long after Fresh the value is still served at once
	// while it is refreshed in the background. Zero means every read past
	// Fresh waits for the origin.
	Stale time.Duration
}

func (w Window) validate(field string) error {
	if w.Fresh <= 0 {
		return fmt.Errorf("cache: %s.Fresh must be positive, got %v", field, w.Fresh)
	}
	if w.Stale < 0 {
		return fmt.Errorf("cache: %s.Stale must not be negative, got %v", field, w.Stale)
	}
	return nil
}

// Config is what the user of a role (dataplane.Config.Cache,
// cachenode.Config.Cache) sets of its cache: the windows, the negative
// TTL, the size bound and the origin read bound. The role fills in the
// rest of Options (clock, verifier, metrics, logs, complete namespaces)
// from its own configuration, where each is stated once. Start from
// DefaultConfig.
type Config struct {
	// Default is the window of every namespace not listed in Windows.
	// Flags: -fresh-ttl, -stale-ttl.
	Default Window
	// Windows overrides the window per namespace.
	Windows map[string]Window
	// NegativeTTL is how long a "not found" from the origin is served
	// without asking again. A deleted key (tombstone) uses its namespace's
	// window instead, like any other version. Zero asks the origin on every
	// read of an absent key (the answer is still shared by concurrent reads).
	// Flag: -negative-ttl.
	NegativeTTL time.Duration
	// MaxBytes bounds the memory the cache holds, estimated as the sizes of
	// namespace, key and value plus a fixed overhead per entry. When it is
	// exceeded, the least useful entries (otter's W-TinyLFU policy) are
	// evicted. Must be positive. Flag: -cache-bytes.
	MaxBytes int64
	// RefreshTimeout bounds each origin read. Must be positive.
	RefreshTimeout time.Duration
}

// IsZero reports whether c is the zero Config (which roles take as
// DefaultConfig).
func (c Config) IsZero() bool {
	return c.Default == (Window{}) && c.Windows == nil && c.NegativeTTL == 0 && c.MaxBytes == 0 && c.RefreshTimeout == 0
}

// Options configure a Cache: a Config and the settings a role derives
// from its own configuration. Start from DefaultOptions and change fields;
// New rejects a zero value with an error naming the first bad field.
type Options struct {
	Config
	// MaxRefreshes bounds the background refreshes (stale-while-revalidate
	// reads of the origin) running at once, so that a slow origin with many
	// keys past their fresh window cannot pile up goroutines without limit.
	// A read that would start one more is still answered with the stale
	// value at once; the refresh is skipped and counted in
	// dataplane_cache_refreshes_shed_total, and a later read retries. Zero
	// means 256.
	MaxRefreshes int
	// Complete lists the namespaces held whole (DESIGN.md, decision 7): the
	// cache keeps every key's newest version in an index that eviction
	// never touches, and once MarkComplete says the index is up to date, a
	// read of a key the index does not know, or knows deleted, is answered
	// "not found" from memory with no origin read. Values may still be
	// evicted; a refill older than the indexed version is never served.
	// Every other namespace is partial: see MaxFloors.
	Complete []string
	// ApplyAll makes Apply install values of partial namespaces' keys that
	// are not held too, as it does for complete namespaces: for a cache
	// node, which caches for its whole region what it is written and told.
	// By default a node keeps values only of the keys it is asked for and
	// only remembers the versions of the others.
	ApplyAll bool
	// MaxFloors bounds the versions remembered for keys of partial
	// namespaces whose value is not held (so that a refill from a lagging
	// origin is not served as fresh after the value was evicted). When it
	// must forget, a floor is folded into a conservative per-stripe floor:
	// refills below it are served marked stale (never as fresh) until the
	// forgotten version is older than MaxOriginLag. Zero means 262,144.
	MaxFloors int
	// MaxOriginLag is the longest an origin (a replica, a cache node) is
	// assumed to lag behind the newest write when a partial namespace's
	// floor had to be forgotten (see MaxFloors). Zero means one hour.
	MaxOriginLag time.Duration
	// MaxNegative bounds the "not found" answers held for partial
	// namespaces. They live apart from values, so a flood of made-up keys
	// can push out only other not-founds, never a value. Zero means 65,536.
	MaxNegative int
	// MaxLoads bounds the origin reads in flight at once, over all keys
	// (misses and refreshes); more wait for a slot, within RefreshTimeout.
	// Zero means 64.
	MaxLoads int
	// MaxFutureSkew refuses versions whose physical time is more than this
	// ahead of the cache's clock (DESIGN.md decision 8): from gossip, the
	// log, snapshots, peers, local files and origin reads alike, since they
	// all pass through Apply, Invalidate or a load. A version near the top
	// of the range would otherwise make every later write of its key look
	// old, for good. Refusals are counted in
	// dataplane_cache_future_refused_total. Zero means 5 s.
	MaxFutureSkew time.Duration
	// Verifier, when set, checks the publisher's signature (record.Seal)
	// of every record that reaches the cache with a value: Apply (gossip,
	// snapshots, peers, local files) and every origin read. A record that
	// is unsigned or badly signed is not installed and is counted in
	// dataplane_cache_signature_refused_total{reason}; an origin read that
	// returns one fails, so the previously held good value keeps being
	// served (stale), or, with nothing held, the read fails (unavailable).
	// Invalidate carries no signature: its callers (the gossip node, the
	// node's snapshot loader) verify before they call it. Nil: no checks.
	// Use a *sign.Verifier.
	Verifier Verifier
	// Now is the clock; tests inject a fake one. Nil means the wall clock
	// read once per millisecond by a goroutine, which makes the hit path
	// cheaper than calling time.Now.
	Now func() time.Time
	// Registerer receives the cache's metrics; nil registers none. Two
	// caches on one Registerer need prometheus.WrapRegistererWith to tell
	// them apart.
	Registerer prometheus.Registerer
	// Logger receives origin failures and anomalies; nil means
	// slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns the cache a sentinel starts from: values fresh for
// 10 s (the RFC's TTL) and served stale for a day, so a node rides out a long
// origin outage; not-founds cached for 5 s; 256 MiB of entries; origin reads
// bounded to 5 s.
func DefaultConfig() Config {
	return Config{
		Default:        Window{Fresh: 10 * time.Second, Stale: 24 * time.Hour},
		NegativeTTL:    5 * time.Second,
		MaxBytes:       256 << 20,
		RefreshTimeout: 5 * time.Second,
	}
}

// DefaultOptions returns Options over DefaultConfig, every other field
// zero (its documented default).
func DefaultOptions() Options { return Options{Config: DefaultConfig()} }

// validate reports the first bad field of o.
func (o *Options) validate() error {
	if err := o.Default.validate("Default"); err != nil {
		return err
	}
	for ns, w := range o.Windows {
		if err := record.ValidateNamespace(ns); err != nil {
			return fmt.Errorf("cache: Windows[%q]: %w", ns, err)
		}
		if err := w.validate(fmt.Sprintf("Windows[%q]", ns)); err != nil {
			return err
		}
	}
	switch {
	case o.NegativeTTL < 0:
		return fmt.Errorf("cache: NegativeTTL must not be negative, got %v", o.NegativeTTL)
	case o.MaxBytes <= 0:
		return fmt.Errorf("cache: MaxBytes must be positive, got %d", o.MaxBytes)
	case o.RefreshTimeout <= 0:
		return fmt.Errorf("cache: RefreshTimeout must be positive, got %v", o.RefreshTimeout)
	case o.MaxRefreshes < 0:
		return fmt.Errorf("cache: MaxRefreshes must not be negative, got %d", o.MaxRefreshes)
	case o.MaxFloors < 0 || o.MaxNegative < 0 || o.MaxLoads < 0 || o.MaxOriginLag < 0 || o.MaxFutureSkew < 0:
		return fmt.Errorf("cache: MaxFloors, MaxNegative, MaxLoads, MaxOriginLag and MaxFutureSkew must not be negative")
	}
	for _, ns := range o.Complete {
		if err := record.ValidateNamespace(ns); err != nil {
			return fmt.Errorf("cache: Complete: %w", err)
		}
	}
	return nil
}

// Defaults of the fields whose zero value means "the default".
const (
	defaultMaxRefreshes = 256
	defaultMaxFloors    = 1 << 18
	defaultMaxNegative  = 1 << 16
	defaultMaxLoads     = 64
	defaultMaxOriginLag = time.Hour
	// DefaultMaxFutureSkew is Options.MaxFutureSkew when left zero.
	DefaultMaxFutureSkew = 5 * time.Second
)

// withDefaults returns o with zero fields set to their defaults.
func (o Options) withDefaults() Options {
	if o.MaxRefreshes == 0 {
		o.MaxRefreshes = defaultMaxRefreshes
	}
	if o.MaxFloors == 0 {
		o.MaxFloors = defaultMaxFloors
	}
	if o.MaxNegative == 0 {
		o.MaxNegative = defaultMaxNegative
	}
	if o.MaxLoads == 0 {
		o.MaxLoads = defaultMaxLoads
	}
	if o.MaxOriginLag == 0 {
		o.MaxOriginLag = defaultMaxOriginLag
	}
	if o.MaxFutureSkew == 0 {
		o.MaxFutureSkew = DefaultMaxFutureSkew
	}
	return o
}

// errNilLoader is returned by New when it is given no Loader.
var errNilLoader = errors.New("cache: nil Loader")

// Verifier checks publisher signatures; *sign.Verifier implements it.
type Verifier interface {
	// VerifyRecord checks r's Seal against r, its value included.
	VerifyRecord(r record.Record) error
}
