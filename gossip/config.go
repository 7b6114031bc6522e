package gossip

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane/internal/gossiptune"
	"github.com/dataplane/dataplane/record"
)

// Verifier checks publisher signatures; *sign.Verifier implements it.
type Verifier interface {
	// VerifyRecord checks r's Seal against r, its value included.
	VerifyRecord(r record.Record) error
	// VerifyChange checks c's Seal against c, without the value.
	VerifyChange(c record.Change) error
}

// Cluster is what the user of a node sets of its gossip membership and
// protocol: who it is, where it listens, whom it joins, its keys and its
// timers. dataplane.Config.Gossip takes it, and the node derives the rest of
// Config (verifier, clock, future skew, metrics, logs, its hooks) from its
// own configuration, where each is stated once. Start from a preset:
// DefaultLANConfig().Cluster, DefaultWANConfig().Cluster or
// DefaultLocalConfig().Cluster.
type Cluster struct {
	// Name identifies the node in the cluster and must be unique in it. A
	// node restarted under the same name must come back on the same
	// address (memberlist refuses to move a name to another address unless
	// Memberlist.DeadNodeReclaimTime allows it). Default: the host name.
	Name string

	// Region groups nodes for eager push: a change goes directly to every
	// member of the publisher's region and to a few members of each other
	// region (the preset's RelaysPerRegion), which forward it to their
	// own. 1 to 64 bytes of a-z, 0-9, '-' and '_'. Carried in memberlist
	// node metadata.
	Region string

	// BindAddr is the host:port the node listens on (UDP and TCP, same
	// port), e.g. "0.0.0.0:7946". Port 0 picks a free port; see
	// (*Node).Addr. Empty means every address, a free port. Ignored when
	// Transport is set, but for the port it advertises.
	BindAddr string

	// AdvertiseAddr is the host:port other nodes dial, when it differs
	// from BindAddr (NAT). Port 0 means BindAddr's port. Empty: derived
	// from the bind address.
	AdvertiseAddr string

	// Seeds are host:port addresses of nodes to join at start. A node whose
	// seeds are all unreachable starts alone and keeps retrying them (every
	// 10 s in DefaultLANConfig, see the presets).
	Seeds []string

	// SecretKeys turn on gossip encryption and authentication (AES-GCM
	// through memberlist's keyring): 16, 24 or 32 bytes each, the first is
	// the primary, used to encrypt; all are tried to decrypt. Nodes without
	// a key they share cannot join, read or inject. Empty: plaintext
	// gossip, which New refuses unless Insecure is set. See the package
	// documentation for rotating keys.
	SecretKeys [][]byte

	// Insecure allows plaintext gossip when SecretKeys is empty. Without a
	// key, anyone who can reach the gossip port can join, read every change
	// and inject its own (changes and acknowledgements alike), so New
	// refuses a Config with neither SecretKeys nor Insecure. Set it only on
	// purpose: tests, a loopback dev cluster. It has no effect when
	// SecretKeys is set.
	Insecure bool

	// InlineValueMax is the largest value, in bytes, that travels inside a
	// change message so that receivers need no origin read. Larger values
	// travel as an invalidation only. 0 to MaxInlineValue, and small enough
	// that a change message fits one packet (Memberlist.UDPBufferSize).
	InlineValueMax int

	// ReportInterval paces this node's applied-version report (its log
	// cursor and the newest version applied per namespace, carried in its
	// memberlist metadata; see Receipt and Fleet): an update for receipts
	// (the cursor newly covers a version applied by an unacknowledged
	// path) at most once per ReportInterval, or 100 ms per live member if
	// longer; an update for the fleet view at most once per 10 ×
	// ReportInterval, or 2 s per live member if longer. Zero means 1 s. A
	// negative value keeps the receipt updates (every 1 s at most) and
	// turns the fleet-view updates off: with sparse changes each one costs
	// a view update from every node (BENCHMARKS.md, "Fleet receipts"), and
	// a large fleet that needs no fleet page may save that.
	ReportInterval time.Duration

	// Observer marks a node that serves nothing (a publisher's member):
	// fleet receipts and the fleet view do not count it.
	Observer bool

	// Transport replaces memberlist's UDP/TCP transport, e.g. with a
	// netsim.Transport that injects loss, delay and partitions. Nil: a
	// memberlist.NetTransport on BindAddr.
	Transport memberlist.Transport

	// Memberlist is the base memberlist configuration (timers, buffer
	// sizes); the presets copy memberlist's own. Name, addresses,
	// Transport, keys, Delegate, Events and Logger are set from the fields
	// above and overwritten. Nil: memberlist.DefaultLANConfig().
	Memberlist *memberlist.Config

	// tune is the protocol tuning the preset chose (relays, push
	// acknowledgements and retries, reconnection, digest, recent-change
	// and queue bounds; see internal/gossiptune and the presets). Zero, as
	// in a Cluster not from a preset: DefaultLANConfig's.
	tune gossiptune.Tuning
}

// Tune changes the protocol tuning c's preset chose. It is for this
// module's tests, simulations and bench harness, which run networks no
// preset describes: f's argument type lives in an internal package, so no
// other module can write f. A deployment picks a preset and its Memberlist
// timers.
func (c *Cluster) Tune(f func(*gossiptune.Tuning)) {
	if c.tune == (gossiptune.Tuning{}) {
		c.tune = lanTuning()
	}
	f(&c.tune)
}

// Config configures a Node: a Cluster and the settings a node derives from
// its own configuration. Start from DefaultLANConfig, DefaultWANConfig or
// DefaultLocalConfig and change what you need; New validates it.
type Config struct {
	Cluster

	// MaxFutureSkew refuses changes whose version's time is more than this
	// ahead of the node's clock (Now), from every path (push, relay,
	// gossip, digests, the log), counted as dropped with reason "future":
	// one forged or mis-stamped version near the top of the range would
	// otherwise make every later write of its key look old on every node.
	// Zero means 5 s.
	MaxFutureSkew time.Duration

	// Verifier, when set, checks the publisher's signature (record.Seal)
	// of every change from every path (push, relay, gossip, digests, the
	// log, and Publish on this node) before anything is remembered,
	// applied or spread: a change that is unsigned, signed by an untrusted
	// key, or whose signature (or inline value's digest) does not match is
	// dropped and counted in messages_dropped_total with reason
	// "unsigned", "untrusted_key", "bad_signature" or "digest_mismatch".
	// Gossip encryption keeps strangers out; signatures keep insiders (a
	// leaked gossip key, a compromised node) from forging. Nil: no
	// checks, as before issue 12. Use a *sign.Verifier.
	Verifier Verifier

	// bindHost, bindPort, advHost and advPort are BindAddr and
	// AdvertiseAddr split by validate.
	bindHost, advHost string
	bindPort, advPort int

	// Held, when set, returns the newest version of ns/key the node holds
	// or knows as a version floor, whichever path brought it (gossip, the
	// change log, a snapshot, an origin read): a node answers a receipt's
	// query (receipt.go) with it. It must be quick and must not call back
	// into the Node. Nil: only the versions gossip itself saw recently
	// (the preset's RecentMax) count, so a change the node took from the log alone is
	// not reported as held.
	Held func(ns, key string) record.Version

	// OnCheckpoint, when set, is handed every signed namespace checkpoint
	// this node receives by gossip (raw: checkpoint.Marshal's bytes, a copy
	// the callee may keep; source: "gossip/push" or "gossip/relay").
	// Gossip does not decide trust: the node verifies it. Its answer
	// decides only whether a relay forwards it: nil, or an error wrapping
	// checkpoint.ErrMismatch (the checkpoint verified, but this node's
	// state does not match it yet), forward it if it is newer than the
	// last forwarded for its namespace; any other error (unsigned, bad
	// signature, expired, rollback...) stops it here. Called concurrently,
	// from memberlist's stream handlers: it must not block for long and
	// must not call back into the Node. A panic in it is recovered,
	// counted and logged. Nil: checkpoints are relayed, not used.
	OnCheckpoint func(raw []byte, source string) error

	// Registerer receives the node's metrics. Nil: none. Several nodes in
	// one process need distinct registries (or prometheus.WrapRegistererWith
	// a label each).
	Registerer prometheus.Registerer

	// Logger receives the node's logs and memberlist's, at their levels
	// (memberlist's DEBUG lines become slog.LevelDebug). Nil: slog.Default().
	Logger *slog.Logger

	// Now is the clock for apply lag and log positions. Nil: time.Now.
	Now func() time.Time
}

// DefaultLANConfig returns a configuration for nodes in one data center,
// over memberlist.DefaultLANConfig: listening on 0.0.0.0:7946, values up to
// 512 bytes inline, and the tuning of lanTuning.
func DefaultLANConfig() Config {
	host, _ := os.Hostname()
	return Config{Cluster: Cluster{
		Name:           host,
		Region:         "default",
		BindAddr:       "0.0.0.0:7946",
		InlineValueMax: 512,
		Memberlist:     memberlist.DefaultLANConfig(),
		tune:           lanTuning(),
	}}
}

// lanTuning is DefaultLANConfig's tuning: 2 relays per other region, a
// 25 ms first acknowledgement wait and 8 retries per push, lost members
// retried every 10 s for an hour, 32 KiB digests, 16384 recent changes
// remembered and 4096 queued messages at most.
func lanTuning() gossiptune.Tuning {
	return gossiptune.Tuning{
		RelaysPerRegion:   2,
		PushAckTimeout:    25 * time.Millisecond,
		PushRetries:       8,
		ReconnectInterval: 10 * time.Second,
		ReconnectTimeout:  time.Hour,
		DigestMaxBytes:    32 << 10,
		RecentMax:         16384,
		QueueMax:          4096,
	}
}

// DefaultWANConfig returns a configuration for a cluster spanning regions,
// over memberlist.DefaultWANConfig: DefaultLANConfig with a 300 ms first
// acknowledgement wait and lost members retried every 30 s.
func DefaultWANConfig() Config {
	c := DefaultLANConfig()
	c.tune.PushAckTimeout = 300 * time.Millisecond
	c.tune.ReconnectInterval = 30 * time.Second
	c.Memberlist = memberlist.DefaultWANConfig()
	return c
}

// DefaultLocalConfig returns a configuration for nodes on one machine
// (tests, the dev mode), over memberlist.DefaultLocalConfig:
// DefaultLANConfig on 127.0.0.1, a free port, lost members retried every
// 2 s.
func DefaultLocalConfig() Config {
	c := DefaultLANConfig()
	c.BindAddr = "127.0.0.1:0"
	c.tune.ReconnectInterval = 2 * time.Second
	c.Memberlist = memberlist.DefaultLocalConfig()
	return c
}

// Encryption overhead memberlist adds to a packet (version byte, nonce,
// GCM tag, padding) and its other framing: user message type, CRC header,
// compound framing, a label.
const packetFraming = 1 + 12 + 16 + 16 + 1 + 5 + 4

// validate fills defaults for zero fields that have one and checks the rest.
func (c *Config) validate() error {
	var errs []error
	if c.Name == "" {
		c.Name, _ = os.Hostname()
	}
	if c.Name == "" || len(c.Name) > MaxNameLen {
		errs = append(errs, fmt.Errorf("Name %.20q... must be 1 to %d bytes", c.Name, MaxNameLen))
	}
	if err := validateRegion(c.Region); err != nil {
		errs = append(errs, err)
	}
	if c.Memberlist == nil {
		c.Memberlist = memberlist.DefaultLANConfig()
	}
	if c.tune == (gossiptune.Tuning{}) {
		c.tune = lanTuning()
	}
	var err error
	if c.bindHost, c.bindPort, err = splitAddr(c.BindAddr); err != nil {
		errs = append(errs, fmt.Errorf("BindAddr: %w", err))
	}
	if c.advHost, c.advPort, err = splitAddr(c.AdvertiseAddr); err != nil {
		errs = append(errs, fmt.Errorf("AdvertiseAddr: %w", err))
	}
	for i, k := range c.SecretKeys {
		if err := memberlist.ValidateKey(k); err != nil {
			errs = append(errs, fmt.Errorf("SecretKeys[%d]: %w", i, err))
		}
	}
	switch {
	case len(c.SecretKeys) == 0 && !c.Insecure:
		errs = append(errs, errors.New("SecretKeys is empty and Insecure is false: give SecretKeys (16, 24 or 32 bytes) to encrypt gossip, or set Insecure to allow plaintext on purpose"))
	case len(c.SecretKeys) > 0 && !c.Memberlist.GossipVerifyIncoming:
		// memberlist would then accept plaintext packets from anyone,
		// forged changes and acknowledgements included.
		errs = append(errs, errors.New("Memberlist.GossipVerifyIncoming must be true with SecretKeys: otherwise plaintext packets are accepted"))
	}
	if c.InlineValueMax < 0 || c.InlineValueMax > MaxInlineValue {
		errs = append(errs, fmt.Errorf("InlineValueMax %d not in [0, %d]", c.InlineValueMax, MaxInlineValue))
	} else if need := maxChangeSize(c.InlineValueMax, len(c.Name)) + packetFraming + len(c.Memberlist.Label); need > c.Memberlist.UDPBufferSize {
		errs = append(errs, fmt.Errorf("InlineValueMax %d makes a %d-byte packet, over Memberlist.UDPBufferSize %d", c.InlineValueMax, need, c.Memberlist.UDPBufferSize))
	}
	if c.tune.RelaysPerRegion < 1 {
		errs = append(errs, fmt.Errorf("RelaysPerRegion %d must be at least 1", c.tune.RelaysPerRegion))
	}
	if c.tune.PushAckTimeout <= 0 {
		errs = append(errs, fmt.Errorf("PushAckTimeout %s must be positive", c.tune.PushAckTimeout))
	}
	if c.tune.PushRetries < 0 {
		errs = append(errs, fmt.Errorf("PushRetries %d must not be negative", c.tune.PushRetries))
	}
	if c.tune.ReconnectInterval <= 0 {
		errs = append(errs, fmt.Errorf("ReconnectInterval %s must be positive", c.tune.ReconnectInterval))
	}
	if c.tune.DigestMaxBytes < 64 || c.tune.DigestMaxBytes > MaxDigestSize {
		errs = append(errs, fmt.Errorf("DigestMaxBytes %d not in [64, %d]", c.tune.DigestMaxBytes, MaxDigestSize))
	}
	if c.tune.RecentMax < 1 {
		errs = append(errs, fmt.Errorf("RecentMax %d must be positive", c.tune.RecentMax))
	}
	if c.tune.QueueMax < 1 {
		errs = append(errs, fmt.Errorf("QueueMax %d must be positive", c.tune.QueueMax))
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("gossip config: %w", err)
	}
	return nil
}

// splitAddr splits a "host:port" address; "" is every address, port 0.
func splitAddr(addr string) (string, int, error) {
	if addr == "" {
		return "", 0, nil
	}
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%q: want host:port: %w", addr, err)
	}
	port, err := strconv.ParseUint(ps, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("%q: port %q: want 0 to 65535", addr, ps)
	}
	return host, int(port), nil
}

// validateRegion checks a region name: 1 to 64 bytes of a-z, 0-9, '-', '_'.
func validateRegion(r string) error {
	if r == "" || len(r) > 64 {
		return fmt.Errorf("Region %q must be 1 to 64 bytes", r)
	}
	for i := 0; i < len(r); i++ {
		c := r[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("Region %q: byte %q not allowed (use a-z, 0-9, '-', '_')", r, c)
		}
	}
	return nil
}
