package bench

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Backend is the kind of origin an option reads.
type Backend string

// The origins the bench runs against, as real servers on loopback.
const (
	S3       Backend = "s3"       // versitygw, or any S3-compatible server
	DynamoDB Backend = "dynamodb" // dynalite, or any DynamoDB-compatible server
)

// Option is one configuration of the system: one row of DESIGN.md's table
// "The RFC's options as configurations".
type Option struct {
	// ID is the short name used by the -options flag: 1, 2, 3, 4A, 4B,
	// ours, ours+tier, ours-ddb.
	ID string `json:"id"`
	// Name describes the option in the table.
	Name string `json:"name"`
	// Origin is where records live.
	Origin Backend `json:"origin"`
	// Tier puts a regional cache-node tier between sentinels and the
	// origin.
	Tier bool `json:"cache_tier"`
	// Gossip joins every sentinel (and cache node) in one gossip cluster:
	// changes are pushed at once and the change log is the backstop, so
	// the fresh window can be long (Config.GossipTTL). Without it freshness
	// is the fresh window alone (Config.TTL).
	Gossip bool `json:"gossip"`
	// Inline carries values up to 512 bytes inside gossip messages, so
	// receivers need no origin read; without it gossip only invalidates.
	Inline bool `json:"inline_values"`
}

// Options returns every configuration the bench knows, in table order.
func Options() []Option {
	return []Option{
		{ID: "1", Name: "1 S3 + SWR (TTL only)", Origin: S3},
		{ID: "2", Name: "2 S3 + gossip invalidation", Origin: S3, Gossip: true},
		{ID: "3", Name: "3 S3 + cache nodes (TTL)", Origin: S3, Tier: true},
		{ID: "4A", Name: "4A DynamoDB + SWR (TTL only)", Origin: DynamoDB},
		{ID: "4B", Name: "4B DynamoDB + cache nodes (TTL)", Origin: DynamoDB, Tier: true},
		{ID: "ours", Name: "ours: S3 + gossip (values inline) + log backstop", Origin: S3, Gossip: true, Inline: true},
		{ID: "ours+tier", Name: "ours + cache nodes", Origin: S3, Tier: true, Gossip: true, Inline: true},
		{ID: "ours-ddb", Name: "ours on DynamoDB", Origin: DynamoDB, Gossip: true, Inline: true},
	}
}

// SelectOptions returns the options named by ids (case-insensitive), in
// table order; "all" or an empty list selects every option.
func SelectOptions(ids []string) ([]Option, error) {
	all := Options()
	if len(ids) == 0 || len(ids) == 1 && strings.EqualFold(ids[0], "all") {
		return all, nil
	}
	var out []Option
	for _, o := range all {
		if slices.ContainsFunc(ids, func(id string) bool { return strings.EqualFold(id, o.ID) }) {
			out = append(out, o)
		}
	}
	for _, id := range ids {
		if !slices.ContainsFunc(all, func(o Option) bool { return strings.EqualFold(id, o.ID) }) {
			return nil, fmt.Errorf("unknown option %q (known: 1, 2, 3, 4A, 4B, ours, ours+tier, ours-ddb, all)", id)
		}
	}
	return out, nil
}

// SizeWeight is one bucket of the value size distribution: values of Size
// bytes, drawn with relative probability Weight.
type SizeWeight struct {
	Size   int `json:"size"`
	Weight int `json:"weight"`
}

// ParseSizes parses "size:weight,size:weight" (e.g. "200:85,2048:10,16384:5");
// a size may end in k (KiB).
func ParseSizes(s string) ([]SizeWeight, error) {
	var out []SizeWeight
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		sz, w, ok := strings.Cut(part, ":")
		if !ok {
			w = "1"
		}
		mult := 1
		if strings.HasSuffix(strings.ToLower(sz), "k") {
			mult, sz = 1024, sz[:len(sz)-1]
		}
		n, err := strconv.Atoi(sz)
		if err != nil || n < 1 || n*mult > 256<<10 {
			return nil, fmt.Errorf("value size %q: want 1 to 256k bytes", part)
		}
		wt, err := strconv.Atoi(w)
		if err != nil || wt < 1 {
			return nil, fmt.Errorf("value size %q: weight must be a positive integer", part)
		}
		out = append(out, SizeWeight{Size: n * mult, Weight: wt})
	}
	if len(out) == 0 {
		return nil, errors.New("value sizes: empty distribution")
	}
	return out, nil
}

// FormatSizes is the inverse of ParseSizes.
func FormatSizes(ss []SizeWeight) string {
	parts := make([]string, len(ss))
	for i, s := range ss {
		parts[i] = fmt.Sprintf("%d:%d", s.Size, s.Weight)
	}
	return strings.Join(parts, ",")
}

// Prices are the origin's request prices used for the monthly estimate.
type Prices struct {
	// S3GetPer1000 is the price of 1,000 GET (and HEAD) requests; a
	// conditional GET answered 304 costs the same.
	S3GetPer1000 float64 `json:"s3_get_per_1000"`
	// S3PutPer1000 is the price of 1,000 PUT, COPY, POST or LIST requests
	// (the change log is read with LIST).
	S3PutPer1000 float64 `json:"s3_put_per_1000"`
	// DynamoRRUPerMillion is the price of a million on-demand read request
	// units. One unit reads up to 4 KB strongly consistent, or twice that
	// eventually consistent.
	DynamoRRUPerMillion float64 `json:"dynamodb_rru_per_million"`
	// DynamoWRUPerMillion is the price of a million on-demand write request
	// units (1 KB each).
	DynamoWRUPerMillion float64 `json:"dynamodb_wru_per_million"`
	// DynamoEventual prices reads as eventually consistent (half a unit per
	// 4 KB). The dynamodb store reads with ConsistentRead, so the default
	// is false; a Global Tables replica read locally may be eventual.
	DynamoEventual bool `json:"dynamodb_eventual"`
}

// DefaultPrices are AWS list prices (us-east-1) at the time of writing.
func DefaultPrices() Prices {
	return Prices{S3GetPer1000: 0.0004, S3PutPer1000: 0.005, DynamoRRUPerMillion: 0.125, DynamoWRUPerMillion: 0.625}
}

// Config describes one bench run: the simulated deployment, the workload,
// the fault schedule and where the origins are.
type Config struct {
	// Regions is the number of simulated regions; the origin is in the
	// first. At most 8.
	Regions int `json:"regions"`
	// Sentinels is the number of sentinels (dataplane.Node) per region.
	Sentinels int `json:"sentinels_per_region"`
	// CacheNodes is the number of cache nodes per region for the options
	// with a cache tier.
	CacheNodes int `json:"cache_nodes_per_region"`
	// MinDelay and MaxDelay bound the one-way delay between two regions,
	// drawn once per pair from the seed; Jitter adds up to that much per
	// packet or request.
	MinDelay time.Duration `json:"min_delay"`
	MaxDelay time.Duration `json:"max_delay"`
	Jitter   time.Duration `json:"jitter"`
	// LANDelay is the one-way delay inside a region.
	LANDelay time.Duration `json:"lan_delay"`

	// Keys is the number of keys; reads and writes pick them from a Zipf
	// distribution with exponent ZipfS (> 1).
	Keys  int     `json:"keys"`
	ZipfS float64 `json:"zipf_s"`
	// ReadRate is reads per second over the whole fleet; WriteRate is
	// writes per second.
	ReadRate  float64 `json:"read_rate"`
	WriteRate float64 `json:"write_rate"`
	// ValueSizes is the distribution of written value sizes.
	ValueSizes []SizeWeight `json:"value_sizes"`
	// ReadTimeout bounds each read at a sentinel.
	ReadTimeout time.Duration `json:"read_timeout"`

	// TTL is the fresh window of the TTL-only options (sentinels and cache
	// nodes): the RFC's 10 s. Values are then served stale for a day while
	// they are revalidated (SWR).
	TTL time.Duration `json:"ttl"`
	// GossipTTL is the fresh window of the gossip options.
	GossipTTL time.Duration `json:"gossip_ttl"`
	// LogInterval is how often gossip options read the change log.
	LogInterval time.Duration `json:"log_interval"`
	// Signed turns on signed changes (issue 12): the publisher signs every
	// record with a key generated for the run, and every sentinel and
	// cache node verifies every record and change.
	Signed bool `json:"signed,omitempty"`

	// Warmup runs the workload unmeasured after start (the TTL options
	// warm up for at least two TTLs and a second); Steady is the
	// measured fault-free phase; each Fault lasts Fault and is followed by
	// Recover without faults; Settle is the least time after the last
	// write before the convergence check (each option waits at least its
	// own convergence bound).
	Warmup  time.Duration `json:"warmup"`
	Steady  time.Duration `json:"steady"`
	Fault   time.Duration `json:"fault"`
	Recover time.Duration `json:"recover"`
	Settle  time.Duration `json:"settle"`
	// GossipLoss is the packet loss of the gossip-loss fault.
	GossipLoss float64 `json:"gossip_loss"`

	// ReplicaLag, when positive (or ReplicaLoss), gives every region but
	// the first its own origin replica: a second real bucket or table, fed
	// from the primary by origin/replica with this lag, which the region's
	// sentinels and cache nodes read (over the LAN); the publisher writes
	// the primary, in the first region, whose sentinels read it. As
	// DynamoDB Global Tables or S3 cross-region replication would. The
	// gossip options' settle window grows by the lag (origin.Timing).
	ReplicaLag time.Duration `json:"replica_lag,omitempty"`
	// ReplicaLoss is the probability that the replicator's copy of one
	// change fails on a pass (it is retried on the next, every 50 ms).
	ReplicaLoss float64 `json:"replica_loss,omitempty"`

	// Seed makes the geography, keys, sizes and schedule reproducible.
	Seed uint64 `json:"seed"`
	// Options are the configurations to run, in order.
	Options []Option `json:"options"`
	// Prices price the origin requests.
	Prices Prices `json:"prices"`

	// S3 and Dynamo say where the origins are.
	S3     Endpoint `json:"-"`
	Dynamo Endpoint `json:"-"`
	// Preset names the preset the config started from, for the report.
	Preset string `json:"preset"`
}

// Endpoint is a running origin server, or a binary to start one from.
type Endpoint struct {
	// URL of a running server; empty: start Binary.
	URL string
	// AccessKey, SecretKey and Region sign requests to URL.
	AccessKey, SecretKey, Region string
	// Binary is the server to start when URL is empty; empty: found
	// through the DATAPLANE_VERSITYGW / DATAPLANE_DYNALITE variables, PATH
	// and GOPATH/bin.
	Binary string
}

// DefaultConfig is the full run: 3 regions of 3 sentinels and 2 cache
// nodes, 40-80 ms between regions, 1,000 keys, 2,000 reads/s, 5 writes/s,
// 30 s steady and 10 s per fault. It takes several minutes.
func DefaultConfig() Config {
	return Config{
		Regions: 3, Sentinels: 3, CacheNodes: 2,
		MinDelay: 40 * time.Millisecond, MaxDelay: 80 * time.Millisecond,
		Jitter: 5 * time.Millisecond, LANDelay: 500 * time.Microsecond,
		Keys: 1000, ZipfS: 1.1, ReadRate: 2000, WriteRate: 5,
		ValueSizes:  []SizeWeight{{200, 80}, {1024, 15}, {8192, 5}},
		ReadTimeout: 2 * time.Second,
		TTL:         10 * time.Second, GossipTTL: 10 * time.Minute, LogInterval: 5 * time.Second,
		Warmup: 5 * time.Second, Steady: 30 * time.Second, Fault: 10 * time.Second,
		Recover: 3 * time.Second, Settle: 2 * time.Second,
		GossipLoss: 0.3,
		Seed:       1,
		Options:    Options(),
		Prices:     DefaultPrices(),
		Preset:     "default",
	}
}

// QuickConfig is the --quick preset: 3 regions of 2 sentinels and 1 cache
// node, 200 keys, 400 reads/s, a 1 s TTL and phases of a few seconds, the
// six configurations of the RFC's table (ours without the tier). It
// finishes in under two minutes on 2 cores.
func QuickConfig() Config {
	c := DefaultConfig()
	c.Sentinels, c.CacheNodes = 2, 1
	c.Keys, c.ReadRate, c.WriteRate = 200, 400, 4
	c.TTL, c.LogInterval = time.Second, time.Second
	c.Warmup, c.Steady, c.Fault, c.Recover, c.Settle = 300*time.Millisecond, 2*time.Second, 800*time.Millisecond, 300*time.Millisecond, time.Second
	c.Options, _ = SelectOptions([]string{"1", "2", "3", "4A", "4B", "ours"})
	c.Preset = "quick"
	return c
}

// Validate reports the first bad field of c.
func (c *Config) Validate() error {
	switch {
	case c.Regions < 1 || c.Regions > len(regionNames):
		return fmt.Errorf("regions %d: want 1 to %d", c.Regions, len(regionNames))
	case c.Sentinels < 1:
		return fmt.Errorf("sentinels %d: want at least 1", c.Sentinels)
	case c.CacheNodes < 1:
		return fmt.Errorf("cache-nodes %d: want at least 1", c.CacheNodes)
	case c.MinDelay < 0 || c.MaxDelay < c.MinDelay:
		return fmt.Errorf("delay %s-%s: want 0 <= min <= max", c.MinDelay, c.MaxDelay)
	case c.Jitter < 0 || c.LANDelay < 0:
		return errors.New("jitter and lan-delay must not be negative")
	case c.Keys < 1:
		return fmt.Errorf("keys %d: want at least 1", c.Keys)
	case c.ZipfS <= 1:
		return fmt.Errorf("zipf %v: want > 1", c.ZipfS)
	case c.ReadRate <= 0 || c.WriteRate <= 0:
		return errors.New("read-rate and write-rate must be positive")
	case len(c.ValueSizes) == 0:
		return errors.New("value-sizes: empty")
	case c.ReadTimeout <= 0 || c.TTL <= 0 || c.GossipTTL <= 0 || c.LogInterval <= 0:
		return errors.New("read-timeout, ttl, gossip-ttl and log-interval must be positive")
	case c.Steady <= 0 || c.Fault <= 0 || c.Warmup < 0 || c.Recover < 0 || c.Settle < 0:
		return errors.New("steady and fault must be positive; warmup, recover and settle not negative")
	case c.GossipLoss < 0 || c.GossipLoss > 1:
		return fmt.Errorf("gossip-loss %v: want 0 to 1", c.GossipLoss)
	case c.ReplicaLag < 0 || c.ReplicaLoss < 0 || c.ReplicaLoss >= 1:
		return fmt.Errorf("replica-lag %s, replica-loss %v: want lag >= 0 and loss in [0, 1)", c.ReplicaLag, c.ReplicaLoss)
	case len(c.Options) == 0:
		return errors.New("no options selected")
	}
	return nil
}

// replicas reports whether the regions after the first read replicas.
func (c *Config) replicas() bool { return c.Regions > 1 && (c.ReplicaLag > 0 || c.ReplicaLoss > 0) }

// replicaInterval is how often a replicator passes over the primary's log.
const replicaInterval = 50 * time.Millisecond

// logSettle is the gossip options' settle window: the publisher's budget
// (750 ms) and clock skew (100 ms) plus the cache nodes' shared log read
// (benchTailTTL), and with replicas the replication lag, the replicator's
// pass and a few retries of lost copies.
func (c *Config) logSettle() time.Duration {
	if !c.replicas() {
		return time.Second
	}
	return time.Second + c.ReplicaLag + 4*replicaInterval
}

// regionNames name the simulated regions; the origin is in the first.
var regionNames = []string{"us-east", "eu-west", "ap-south", "us-west", "sa-east", "eu-north", "ap-east", "af-south"}

// maxRTT is the longest round trip between two regions, jitter included.
func (c *Config) maxRTT() time.Duration { return 2 * (c.MaxDelay + c.Jitter) }

func splitComma(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
