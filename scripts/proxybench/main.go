// Command proxybench measures, in one run, requests per second and latency
// percentiles through a sentinel (route lookup, API-key check, proxy) and
// through a plain httputil.ReverseProxy to the same upstream, loading both
// with wrk (Debian package "wrk") over loopback. Rounds alternate between
// the two (A B A B ...) so that noise from a shared machine falls on both;
// the median of each figure over the rounds is reported, with the ratio.
//
//	apt-get install -y wrk
//	go run ./scripts/proxybench -rounds 5 -duration 10s -connections 32
//
// With -random-hosts N, each round also loads the sentinel with a share
// (-random-share) of requests for N random unknown hosts mixed in, as a
// stranger would send: each is a lookup the node does not hold, bounded by
// the gateway's miss limits (429/503 once spent, 404 otherwise).
//
// The sentinel runs as `dataplane sentinel` would: a dataplane.Node over a
// directory origin (warmed from its snapshot, gossip off) and sentinel.Start
// with its default gateway settings. Both proxies use an upstream transport
// with the same keep-alive pool sizes.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dataplane/dataplane"
	"github.com/dataplane/dataplane/origin/dir"
	"github.com/dataplane/dataplane/publisher"
	"github.com/dataplane/dataplane/sentinel"
)

const (
	host   = "bench.example.com"
	rawKey = "sk_bench_0123456789"
)

func main() {
	rounds := flag.Int("rounds", 5, "rounds per proxy, alternating")
	duration := flag.Duration("duration", 10*time.Second, "length of one wrk round")
	conns := flag.Int("connections", 32, "wrk connections (-c)")
	threads := flag.Int("threads", 1, "wrk threads (-t); the load generator shares the CPU with what it measures")
	wrkPath := flag.String("wrk", "wrk", "path of the wrk binary")
	randomHosts := flag.Int("random-hosts", 0, "also load the sentinel with requests for this many random unknown hosts mixed in (0: not)")
	randomShare := flag.Float64("random-share", 0.1, "share of requests for random hosts with -random-hosts")
	flag.Parse()
	if err := run(*rounds, *duration, *conns, *threads, *wrkPath, *randomHosts, *randomShare); err != nil {
		fmt.Fprintln(os.Stderr, "proxybench:", err)
		os.Exit(1)
	}
}

// result is one wrk round.
type result struct {
	rps           float64
	p50, p99, max time.Duration
	errors        int
}

func run(rounds int, d time.Duration, conns, threads int, wrkPath string, randomHosts int, randomShare float64) error {
	if _, err := exec.LookPath(wrkPath); err != nil {
		return fmt.Errorf("wrk not found (apt-get install -y wrk): %w", err)
	}
	ctx := context.Background()
	upstream, err := serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte("hello from upstream\n"))
	}))
	if err != nil {
		return err
	}
	upURL, _ := url.Parse(upstream)

	plain := &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(upURL); pr.Out.Host = pr.In.Host; pr.SetXForwarded() },
		Transport: &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second},
		ErrorLog:  slog.NewLogLogger(slog.DiscardHandler, slog.LevelError),
	}
	plainURL, err := serve(plain)
	if err != nil {
		return err
	}

	dataDir, err := os.MkdirTemp("", "proxybench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dataDir)
	store, err := dir.Open(dataDir)
	if err != nil {
		return err
	}
	pcfg := publisher.DefaultConfig()
	pcfg.Logger = slog.New(slog.DiscardHandler)
	pub, err := publisher.New(store, pcfg)
	if err != nil {
		return err
	}
	put := func(ns, key string, v any) error {
		b, _ := json.Marshal(v)
		_, err := pub.Put(ctx, ns, key, b)
		return err
	}
	if err := errors.Join(
		put(sentinel.RoutesNamespace, host, sentinel.Route{DeploymentID: "dep_bench", Upstreams: []string{upstream}, RequireKey: true, Keyspace: "bench"}),
		put(sentinel.KeysNamespace, sentinel.KeyRecordKey("bench", rawKey), sentinel.APIKey{KeyID: "key_bench", Enabled: true}),
	); err != nil {
		return err
	}
	for _, ns := range []string{sentinel.RoutesNamespace, sentinel.KeysNamespace} {
		if _, err := pub.Snapshot(ctx, ns); err != nil {
			return err
		}
	}
	node, err := dataplane.Open(ctx, dataplane.Config{Origin: store, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	defer node.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv, err := sentinel.Start(sentinel.ServerConfig{Node: node, Listener: ln, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	sentinelURL := "http://" + srv.Addr()

	// A request through each must succeed before anything is measured.
	for _, u := range []string{plainURL, sentinelURL} {
		if err := probe(u); err != nil {
			return err
		}
	}

	type target struct {
		name, url, script string
	}
	targets := []target{{"plain ReverseProxy", plainURL, ""}, {"sentinel", sentinelURL, ""}}
	if randomHosts > 0 {
		script, err := randomHostsScript(dataDir, randomHosts, randomShare)
		if err != nil {
			return err
		}
		targets = append(targets, target{fmt.Sprintf("sentinel, %.0f%% of requests for %d random hosts", randomShare*100, randomHosts), sentinelURL, script})
	}
	res := make([][]result, len(targets))
	for r := 0; r < rounds; r++ {
		for i, t := range targets {
			out, err := wrk(wrkPath, t.url, t.script, d, conns, threads)
			if err != nil {
				return fmt.Errorf("%s round %d: %w", t.name, r+1, err)
			}
			fmt.Fprintf(os.Stderr, "round %d %-18s %9.0f req/s  p50 %v  p99 %v\n", r+1, t.name, out.rps, out.p50, out.p99)
			res[i] = append(res[i], out)
		}
	}

	fmt.Printf("\nwrk -t%d -c%d -d%s, %d alternating rounds each, medians over the rounds:\n\n", threads, conns, d, rounds)
	fmt.Println("| proxy | req/s | p50 | p99 | max | non-2xx/errors |")
	fmt.Println("|---|---|---|---|---|---|")
	med := make([]result, len(targets))
	for i, t := range targets {
		med[i] = median(res[i])
		fmt.Printf("| %s | %.0f | %v | %v | %v | %d |\n", t.name, med[i].rps, med[i].p50, med[i].p99, med[i].max, med[i].errors)
	}
	// Rounds run back to back, so a round of each forms a pair that saw
	// about the same machine; the median of the pairs' ratios is the figure
	// least moved by other load.
	var ratios []float64
	for r := range res[0] {
		ratios = append(ratios, res[1][r].rps/res[0][r].rps)
	}
	fmt.Printf("\nsentinel / plain, medians: req/s %.2f, p99 %.2f; median of the %d paired rounds' req/s ratios: %.2f (range %.2f-%.2f)\n",
		med[1].rps/med[0].rps, float64(med[1].p99)/float64(med[0].p99), len(ratios), medianOf(ratios), slices.Min(ratios), slices.Max(ratios))
	return nil
}

func serve(h http.Handler) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	go (&http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}).Serve(ln)
	return "http://" + ln.Addr().String(), nil
}

func probe(u string) error {
	req, _ := http.NewRequest("GET", u+"/probe", nil)
	req.Host = host
	req.Header.Set("Authorization", "Bearer "+rawKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("probe %s: status %d", u, resp.StatusCode)
	}
	return nil
}

// median returns the median of each figure of the rounds, taken apart.
func median(rs []result) result {
	pick := func(f func(result) float64) float64 {
		xs := make([]float64, len(rs))
		for i, r := range rs {
			xs[i] = f(r)
		}
		return medianOf(xs)
	}
	return result{
		rps:    pick(func(r result) float64 { return r.rps }),
		p50:    time.Duration(pick(func(r result) float64 { return float64(r.p50) })),
		p99:    time.Duration(pick(func(r result) float64 { return float64(r.p99) })),
		max:    time.Duration(pick(func(r result) float64 { return float64(r.max) })),
		errors: int(pick(func(r result) float64 { return float64(r.errors) })),
	}
}

// medianOf returns the median of xs: the middle one, or the mean of the two
// middle ones for an even count. xs is not changed.
func medianOf(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// randomHostsScript writes a wrk Lua script that sends a share of its
// requests to one of n random unknown hosts, and returns its path.
func randomHostsScript(dir string, n int, share float64) (string, error) {
	every := int(1/share + 0.5)
	if share <= 0 || every < 1 {
		return "", fmt.Errorf("-random-share %v: want a share in (0, 1]", share)
	}
	script := fmt.Sprintf(`math.randomseed(os.time())
local i = 0
request = function()
  i = i + 1
  if i %% %d == 0 then
    return wrk.format(nil, nil, {["Host"] = "r" .. math.random(1, %d) .. ".random.example.com", ["Authorization"] = "Bearer %s"})
  end
  return wrk.format(nil)
end
`, every, n, rawKey)
	path := dir + "/random-hosts.lua"
	return path, os.WriteFile(path, []byte(script), 0o644)
}

var (
	reRPS     = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	rePct     = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+[a-z]+)`)
	reMax     = regexp.MustCompile(`(?m)^\s+Latency\s+\S+\s+\S+\s+(\S+)`)
	reNon2xx  = regexp.MustCompile(`Non-2xx or 3xx responses:\s+(\d+)`)
	reSockErr = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

// wrk runs one round and parses its report.
func wrk(path, u, script string, d time.Duration, conns, threads int) (result, error) {
	args := []string{"-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns), "-d", d.String(), "--latency",
		"-H", "Host: " + host, "-H", "Authorization: Bearer " + rawKey}
	if script != "" {
		args = append(args, "-s", script)
	}
	cmd := exec.Command(path, append(args, u+"/bench")...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return result{}, fmt.Errorf("wrk: %w: %s", err, stderr.String())
	}
	s := out.String()
	var r result
	m := reRPS.FindStringSubmatch(s)
	if m == nil {
		return result{}, fmt.Errorf("wrk output without Requests/sec:\n%s", s)
	}
	r.rps, _ = strconv.ParseFloat(m[1], 64)
	for _, m := range rePct.FindAllStringSubmatch(s, -1) {
		d, err := parseWrkDuration(m[2])
		if err != nil {
			return result{}, err
		}
		if m[1] == "50" {
			r.p50 = d
		} else {
			r.p99 = d
		}
	}
	if m := reMax.FindStringSubmatch(s); m != nil {
		r.max, _ = parseWrkDuration(m[1])
	}
	if m := reNon2xx.FindStringSubmatch(s); m != nil {
		n, _ := strconv.Atoi(m[1])
		r.errors += n
	}
	if m := reSockErr.FindStringSubmatch(s); m != nil {
		for _, x := range m[1:] {
			n, _ := strconv.Atoi(x)
			r.errors += n
		}
	}
	return r, nil
}

// parseWrkDuration reads wrk's "1.23ms", "456.00us", "2.01s", "1.5m".
func parseWrkDuration(s string) (time.Duration, error) {
	s = strings.Replace(s, "us", "µs", 1)
	if strings.HasSuffix(s, "m") {
		s += "0s" // minutes: "1.5m" is not Go syntax, "1.5m0s" is
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("wrk duration %q: %w", s, err)
	}
	return d, nil
}
