package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/dataplane/dataplane/bench"
	"github.com/dataplane/dataplane/internal/cli"
)

func init() {
	commands["bench"] = command{summary: "compare the RFC's options on one simulated multi-region deployment", run: runBench}
}

const benchSynopsis = `Usage: dataplane bench [-quick] [flags]

Runs, in one process on loopback, a simulated multi-region deployment: R
regions of S sentinels (dataplane nodes), optional cache nodes per region, a
publisher and the origin in the first region. Regions are joined by links
with a one-way delay and jitter that apply to real traffic: gossip packets and
streams, origin requests and cache-tier requests are delayed (not replaced by
sleeps). The origins are real servers: versitygw (S3) and dynalite (DynamoDB),
started as child processes, or running servers given with -s3-endpoint and
-dynamodb-endpoint.

Every option of the RFC's table (DESIGN.md "The RFC's options as
configurations") runs the same workload with the same seed: Zipf reads, a
trickle of writes with sizes from a distribution, then a fault schedule:
origin outage, partition of the last region, gossip packet loss, restart of
one sentinel per region; then a settle period as long as the option's
convergence bound, and a check that every sentinel serves the origin's latest
version of every key it holds.

Output: a Markdown table on stdout, bench.json and PNG charts (propagation CDF,
origin reads over time with the faults marked) in -out, a progress bar on
stderr. The charts are drawn only by a binary built with -tags charts (the
default build leaves gonum/plot out); -from redraws them from a bench.json:
go run -tags charts ./cmd/dataplane bench -from bench-out/bench.json.

Cost estimate: origin request prices only (no storage, transfer, or servers),
for 30 days at the steady phase's measured rates. S3: every GET, HEAD and 304
at the GET price; PUTs and LISTs (change-log reads list) at the PUT price.
DynamoDB on-demand: reads in read request units, 1 RRU per started 4 KB
(strongly consistent, as the dynamodb store reads) or 0.5 with
-dynamodb-eventual; writes in write request units, 1 WRU per started KB; a
log read or an append counts 1 unit. The run's fleet is small: scale by your
fleet's size and rates.

A missing origin server is an error naming how to install it; with
-skip-missing its options are skipped instead, with a warning in the table.`

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	def := bench.DefaultConfig()
	fs.String("config", "", "JSON file of settings (keys are flag names)")
	quick := fs.Bool("quick", false, "the quick preset: 3 regions × 2 sentinels, 1 cache node per region, 200 keys, 400 reads/s, TTL 1s, phases of 0.3-3s, the RFC's six options; under two minutes on 2 cores (flags given explicitly still apply)")
	var opts cli.StringList
	fs.Var(&opts, "options", "comma-separated options to run: 1, 2, 3, 4A, 4B (the RFC's), ours (gossip with values inline + change-log backstop, on S3), ours+tier (the same with cache nodes), ours-ddb (ours on DynamoDB), or all (default all; -quick: the RFC's five and ours)")
	regions := fs.Int("regions", def.Regions, "number of regions; the origin is in the first (at most 8)")
	sentinels := fs.Int("sentinels", def.Sentinels, "sentinels per region")
	cacheNodes := fs.Int("cache-nodes", def.CacheNodes, "cache nodes per region, for the options with a cache tier")
	minDelay := fs.Duration("min-delay", def.MinDelay, "least one-way delay between two regions (each pair's delay is drawn from [min-delay, max-delay] with the seed)")
	maxDelay := fs.Duration("max-delay", def.MaxDelay, "greatest one-way delay between two regions")
	jitter := fs.Duration("jitter", def.Jitter, "extra random one-way delay per packet or request between regions, up to this")
	lan := fs.Duration("lan-delay", def.LANDelay, "one-way delay inside a region")
	keys := fs.Int("keys", def.Keys, "number of keys")
	zipf := fs.Float64("zipf", def.ZipfS, "Zipf exponent of the key popularity, for reads and writes (> 1)")
	readRate := fs.Float64("read-rate", def.ReadRate, "reads per second over the whole fleet, spread evenly over the sentinels")
	writeRate := fs.Float64("write-rate", def.WriteRate, "writes per second")
	sizes := fs.String("value-sizes", bench.FormatSizes(def.ValueSizes), "value size distribution, size:weight pairs (size in bytes, or KiB with a k suffix); values over 512 bytes travel as invalidations only in gossip")
	readTimeout := fs.Duration("read-timeout", def.ReadTimeout, "bound on each read at a sentinel")
	ttl := fs.Duration("ttl", def.TTL, "fresh window of the TTL-only options, at sentinels and cache nodes (values are then served stale while revalidated)")
	gossipTTL := fs.Duration("gossip-ttl", def.GossipTTL, "fresh window of the gossip options")
	logInterval := fs.Duration("log-interval", def.LogInterval, "how often gossip options read the origin's change log (the backstop)")
	signed := fs.Bool("signed", false, "signed changes: the publisher signs every record (a key made for the run) and every node verifies")
	warmup := fs.Duration("warmup", def.Warmup, "unmeasured workload before the steady phase (TTL options: at least two TTLs + 1s, so the steady phase starts after the first refresh wave)")
	steady := fs.Duration("steady", def.Steady, "the measured fault-free phase (latency, propagation, origin load and cost come from it)")
	fault := fs.Duration("fault", def.Fault, "length of each fault window")
	recov := fs.Duration("recover", def.Recover, "fault-free time after each fault")
	settle := fs.Duration("settle", def.Settle, "least time between the last write and the convergence check; each option waits at least its own convergence bound (TTL options: the TTL, twice with a cache tier; gossip options: the log interval + 1s; plus a round trip and 1s)")
	loss := fs.Float64("gossip-loss", def.GossipLoss, "gossip packet loss during the gossip-loss fault, 0 to 1")
	replicaLag := fs.Duration("replica-lag", 0, "give every region but the first its own origin replica (a second bucket or table, fed from the primary by origin/replica this far behind), read by that region's sentinels and cache nodes; 0: every region reads the primary")
	replicaLoss := fs.Float64("replica-loss", 0, "with replicas: probability that copying one change fails on a replication pass (retried on the next), 0 to <1")
	seed := fs.Uint64("seed", def.Seed, "seed of the geography, keys, value sizes and schedule")
	out := fs.String("out", "bench-out", "directory for bench.json and the PNG charts")
	versitygw := fs.String("versitygw", "", "versitygw binary to start as the S3 origin (default: found on PATH or in GOPATH/bin)")
	dynalite := fs.String("dynalite", "", "dynalite executable to start as the DynamoDB origin (default: found on PATH)")
	s3URL := fs.String("s3-endpoint", "", "URL of a running S3-compatible server to use instead of starting versitygw")
	s3Access := fs.String("s3-access-key", "", "access key for -s3-endpoint")
	s3Secret := fs.String("s3-secret-key", "", "secret key for -s3-endpoint")
	ddbURL := fs.String("dynamodb-endpoint", "", "URL of a running DynamoDB-compatible server to use instead of starting dynalite")
	ddbAccess := fs.String("dynamodb-access-key", "", "access key for -dynamodb-endpoint")
	ddbSecret := fs.String("dynamodb-secret-key", "", "secret key for -dynamodb-endpoint")
	awsRegion := fs.String("aws-region", "us-east-1", "signing region for -s3-endpoint and -dynamodb-endpoint")
	skipMissing := fs.Bool("skip-missing", false, "skip (with a warning in the table) the options whose origin server cannot be started, instead of failing")
	prices := bench.DefaultPrices()
	fs.Float64Var(&prices.S3GetPer1000, "price-s3-get", prices.S3GetPer1000, "USD per 1,000 S3 GET/HEAD requests (a 304 is a GET)")
	fs.Float64Var(&prices.S3PutPer1000, "price-s3-put", prices.S3PutPer1000, "USD per 1,000 S3 PUT/POST/LIST requests")
	fs.Float64Var(&prices.DynamoRRUPerMillion, "price-dynamodb-rru", prices.DynamoRRUPerMillion, "USD per million DynamoDB on-demand read request units")
	fs.Float64Var(&prices.DynamoWRUPerMillion, "price-dynamodb-wru", prices.DynamoWRUPerMillion, "USD per million DynamoDB on-demand write request units")
	fs.BoolVar(&prices.DynamoEventual, "dynamodb-eventual", false, "price DynamoDB reads as eventually consistent (0.5 RRU per 4 KB) instead of strongly consistent (1 RRU), e.g. for local reads of a Global Tables replica")
	noProgress := fs.Bool("no-progress", false, "do not draw the progress bar on stderr")
	from := fs.String("from", "", "render the table and charts of an earlier run's bench.json instead of running (into -out)")
	fs.Usage = cli.Usage(fs, stderr, benchSynopsis, envPrefix)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected arguments %q", fs.Args())}
	}

	cfg := def
	if *quick {
		cfg = bench.QuickConfig()
	}
	var ferr error
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "options":
			cfg.Options, ferr = bench.SelectOptions(opts)
		case "regions":
			cfg.Regions = *regions
		case "sentinels":
			cfg.Sentinels = *sentinels
		case "cache-nodes":
			cfg.CacheNodes = *cacheNodes
		case "min-delay":
			cfg.MinDelay = *minDelay
		case "max-delay":
			cfg.MaxDelay = *maxDelay
		case "jitter":
			cfg.Jitter = *jitter
		case "lan-delay":
			cfg.LANDelay = *lan
		case "keys":
			cfg.Keys = *keys
		case "zipf":
			cfg.ZipfS = *zipf
		case "read-rate":
			cfg.ReadRate = *readRate
		case "write-rate":
			cfg.WriteRate = *writeRate
		case "read-timeout":
			cfg.ReadTimeout = *readTimeout
		case "ttl":
			cfg.TTL = *ttl
		case "gossip-ttl":
			cfg.GossipTTL = *gossipTTL
		case "log-interval":
			cfg.LogInterval = *logInterval
		case "signed":
			cfg.Signed = *signed
		case "warmup":
			cfg.Warmup = *warmup
		case "steady":
			cfg.Steady = *steady
		case "fault":
			cfg.Fault = *fault
		case "recover":
			cfg.Recover = *recov
		case "settle":
			cfg.Settle = *settle
		case "gossip-loss":
			cfg.GossipLoss = *loss
		case "replica-lag":
			cfg.ReplicaLag = *replicaLag
		case "replica-loss":
			cfg.ReplicaLoss = *replicaLoss
		case "seed":
			cfg.Seed = *seed
		case "value-sizes":
			var err error
			if cfg.ValueSizes, err = bench.ParseSizes(*sizes); err != nil {
				ferr = err
			}
		}
	})
	if ferr != nil {
		return usageError{ferr}
	}
	cfg.Prices = prices
	cfg.S3 = bench.Endpoint{URL: *s3URL, AccessKey: *s3Access, SecretKey: *s3Secret, Region: *awsRegion, Binary: *versitygw}
	cfg.Dynamo = bench.Endpoint{URL: *ddbURL, AccessKey: *ddbAccess, SecretKey: *ddbSecret, Region: *awsRegion, Binary: *dynalite}
	if err := cfg.Validate(); err != nil {
		return usageError{err}
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return fmt.Errorf("output directory: %w", err)
	}
	if *from != "" {
		rep, err := bench.ReadReport(*from)
		if err != nil {
			return err
		}
		return writeBenchOutputs(rep, *out, stdout, stderr, false)
	}

	backends, err := bench.StartBackends(cfg)
	if err != nil {
		return err
	}
	defer backends.Close()
	if len(backends.Missing) > 0 {
		var names []string
		for b := range backends.Missing {
			names = append(names, string(b))
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintf(stderr, "dataplane bench: WARNING: %s origin server unavailable: %s\n", n, backends.Missing[bench.Backend(n)])
		}
		if !*skipMissing {
			return fmt.Errorf("origin server(s) %s unavailable (see above); install them, give -s3-endpoint / -dynamodb-endpoint, or pass -skip-missing to skip their options", strings.Join(names, ", "))
		}
	}

	var progress bench.Progress
	var bar *bench.Bar
	if !*noProgress {
		bar = bench.NewBar(stderr, cfg)
		progress = bar
	}
	rep, err := bench.Run(ctx, cfg, backends, progress)
	if bar != nil {
		bar.Close()
	}
	if rep == nil {
		return err
	}
	return errors.Join(err, writeBenchOutputs(rep, *out, stdout, stderr, true))
}

// writeBenchOutputs writes the table to stdout and, into dir, bench.json
// (when withJSON) and the charts.
func writeBenchOutputs(rep *bench.Report, dir string, stdout, stderr io.Writer, withJSON bool) error {
	if err := rep.WriteMarkdown(stdout); err != nil {
		return err
	}
	var wrote []string
	if withJSON {
		jsonPath := filepath.Join(dir, "bench.json")
		if err := rep.WriteJSON(jsonPath); err != nil {
			return err
		}
		wrote = append(wrote, jsonPath)
	}
	charts, err := writeCharts(rep, dir, stderr)
	wrote = append(wrote, charts...)
	fmt.Fprintf(stderr, "dataplane bench: wrote %s\n", strings.Join(wrote, ", "))
	return err
}
