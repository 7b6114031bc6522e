package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dataplane/dataplane/devcluster"
	"github.com/dataplane/dataplane/internal/testkit"
	"github.com/dataplane/dataplane/internal/tlsconfig"
	"github.com/dataplane/dataplane/internal/tlsconfig/tlstest"
	"github.com/dataplane/dataplane/sentinel"
)

// process is one subcommand running in the background, as a process would.
type process struct {
	stdout, stderr testkit.SyncBuffer
	done           chan int
}

// start runs the dataplane command with args until the test ends, and
// returns once its stdout matches ready; the first group of ready is
// returned (an address).
func start(t *testing.T, ready *regexp.Regexp, args ...string) (*process, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &process{done: make(chan int, 1)}
	go func() { p.done <- run(ctx, args, &p.stdout, &p.stderr) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			t.Errorf("%s did not stop", args[0])
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if m := ready.FindStringSubmatch(p.stdout.String()); m != nil {
			return p, m[1]
		}
		select {
		case code := <-p.done:
			p.done <- code
			t.Fatalf("%s exited %d before it was ready:\n%s", args[0], code, p.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("%s not ready in time; stdout %q stderr:\n%s", args[0], p.stdout.String(), p.stderr.String())
	return nil, ""
}

// TestTLSDeployment runs, through the command line as an operator would, a
// publisher API, a cache node and a sentinel reading through it, every
// listener on TLS and the cache node and admin listeners on mutual TLS,
// with every log at debug level. It then writes with the publisher token,
// reads with good, wrong and disabled API keys and admin tokens, and checks
// that no raw key or token appears in any output.
func TestTLSDeployment(t *testing.T) {
	certs := tlstest.New(t)
	origin := t.TempDir()
	const (
		pubToken   = "pub_token_SECRET_1"
		writeToken = "cn_write_SECRET_2"
		readToken  = "cn_read_SECRET_3"
		adminToken = "adm_token_SECRET_4"
		goodKey    = "sk_live_good_SECRET_5"
		offKey     = "sk_live_disabled_SECRET_6"
		unknownKey = "sk_live_unknown_SECRET_7"
		wrongToken = "wrong_token_SECRET_8"
	)
	secrets := []string{pubToken, writeToken, readToken, adminToken, goodKey, offKey, unknownKey, wrongToken}
	serverTLS := []string{"-tls-cert", certs.ServerCert, "-tls-key", certs.ServerKey}
	mutualTLS := append(append([]string(nil), serverTLS...), "-tls-client-ca", certs.CA)
	adminMTLS := []string{"-admin-tls-cert", certs.ServerCert, "-admin-tls-key", certs.ServerKey, "-admin-tls-client-ca", certs.CA}
	clientTLS := []string{"-origin-ca", certs.CA, "-origin-cert", certs.ClientCert, "-origin-key", certs.ClientKey}
	addr := regexp.MustCompile(`on https://(127\.0\.0\.1:\d+)`)
	admAddr := regexp.MustCompile(`\(admin https://(127\.0\.0\.1:\d+)\)`)

	pub, pubAddr := start(t, addr, append([]string{"publish", "-origin", origin, "-token", pubToken, "-gossip=false",
		"-listen", "127.0.0.1:0", "-log-level", "debug"}, append(mutualTLS, "serve")...)...)
	cn, cnAddr := start(t, addr, append(append([]string{"cachenode", "-origin", origin, "-write-token", writeToken, "-read-token", readToken,
		"-admin-token", adminToken, "-gossip=false", "-listen", "127.0.0.1:0", "-admin-listen", "127.0.0.1:0", "-log-level", "debug"},
		mutualTLS...), adminMTLS...)...)
	cnAdmin := admAddr.FindStringSubmatch(cn.stdout.String())[1]

	// Routes and keys go in through the publisher API over TLS, with the token.
	var oneShots testkit.SyncBuffer // the output of every one-shot command
	publish := func(token string, args ...string) (int, string) {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), append([]string{"publish", "-api", "https://" + pubAddr, "-api-ca", certs.CA,
			"-api-client-cert", certs.ClientCert, "-api-client-key", certs.ClientKey, "-token", token}, args...), &stdout, &stderr)
		oneShots.Write(stdout.Bytes())
		oneShots.Write(stderr.Bytes())
		return code, stdout.String() + stderr.String()
	}
	var upstream string
	{
		up := http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "upstream ok key=%s authz=%q", r.Header.Get("X-Dataplane-Key-Id"), r.Header.Get("Authorization"))
		}), ReadHeaderTimeout: time.Second}
		upAddr, err := listenAndServe(&up, "127.0.0.1:0", nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { up.Close() })
		upstream = "http://" + upAddr.String()
	}
	for _, w := range [][]string{
		{"put", "routes", "api.example.com", `{"upstreams":["` + upstream + `"],"require_key":true,"keyspace":"ks"}`},
		{"put", "keys", sentinel.KeyRecordKey("ks", goodKey), `{"key_id":"key_good","enabled":true}`},
		{"put", "keys", sentinel.KeyRecordKey("ks", offKey), `{"key_id":"key_off","enabled":false}`},
	} {
		if code, out := publish(pubToken, w...); code != 0 {
			t.Fatalf("publish %v: exit %d: %s", w, code, out)
		}
	}
	if code, out := publish(wrongToken, "get", "routes", "api.example.com"); code != 1 || !strings.Contains(out, "401") {
		t.Fatalf("publish with a wrong token: exit %d: %s", code, out)
	}
	{ // The publisher API requires a client certificate.
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), []string{"publish", "-api", "https://" + pubAddr, "-api-ca", certs.CA, "-token", pubToken,
			"get", "routes", "api.example.com"}, &stdout, &stderr)
		if code != 1 || stdout.Len() != 0 {
			t.Fatalf("publish without a client certificate: exit %d: %s", code, stderr.String())
		}
		oneShots.Write(stderr.Bytes())
	}

	// A write straight through the cache tier, with its write token.
	{
		var stdout, stderr bytes.Buffer
		args := append([]string{"publish", "-origin", "https://" + cnAddr, "-origin-token", writeToken, "-origin-read-token", readToken, "-gossip=false"}, clientTLS...)
		if code := run(context.Background(), append(args, "put", "routes", "cn.example.com", `{"upstreams":["`+upstream+`"]}`), &stdout, &stderr); code != 0 {
			t.Fatalf("publish through the cache tier: exit %d: %s", code, stderr.String())
		}
		args[4] = wrongToken
		if code := run(context.Background(), append(args, "put", "routes", "cn.example.com", `{"upstreams":["http://127.0.0.1:1"]}`), &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "refused the token") {
			t.Fatalf("publish through the cache tier with a wrong token: exit %d: %s", code, stderr.String())
		}
		oneShots.Write(stdout.Bytes())
		oneShots.Write(stderr.Bytes())
	}

	// The sentinel reads through the cache node over mutual TLS.
	sen, senAddr := start(t, regexp.MustCompile(`listening on http://(127\.0\.0\.1:\d+)`), append(append([]string{"sentinel",
		"-origin", "https://" + cnAddr, "-origin-read-token", readToken, "-gossip=false",
		"-listen", "127.0.0.1:0", "-admin-listen", "127.0.0.1:0", "-admin-token", adminToken, "-log-level", "debug"},
		clientTLS...), adminMTLS...)...)
	senAdmin := admAddr.FindStringSubmatch(sen.stdout.String())[1]

	trusted := tlstest.HTTPClient(t, tlsconfig.Client{CAFile: certs.CA, CertFile: certs.ClientCert, KeyFile: certs.ClientKey}, 10*time.Second)
	noCert := tlstest.HTTPClient(t, tlsconfig.Client{CAFile: certs.CA}, 10*time.Second)
	get := func(c *http.Client, url, host, authz string) (int, string, error) {
		req, _ := http.NewRequest("GET", url, nil)
		req.Host = host
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		resp, err := c.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	gw := "http://" + senAddr + "/"
	for _, tc := range []struct {
		name   string
		client *http.Client
		url    string
		host   string
		authz  string
		status int // 0: refused handshake
		body   string
	}{
		{"good key", http.DefaultClient, gw, "api.example.com", "Bearer " + goodKey, 200, `key=key_good authz=""`},
		{"route written through the cache tier", http.DefaultClient, gw, "cn.example.com", "", 200, "upstream ok"},
		{"disabled key", http.DefaultClient, gw, "api.example.com", "Bearer " + offKey, 403, "disabled"},
		{"unknown key", http.DefaultClient, gw, "api.example.com", "Bearer " + unknownKey, 401, "unknown"},
		{"sentinel admin debug", trusted, "https://" + senAdmin + "/debug/records/routes/api.example.com", "", "Bearer " + adminToken, 200, `"version"`},
		{"sentinel admin wrong token", trusted, "https://" + senAdmin + "/debug/records/routes/api.example.com", "", "Bearer " + wrongToken, 401, "admin token"},
		{"sentinel admin without certificate", noCert, "https://" + senAdmin + "/healthz", "", "", 0, ""},
		{"cache node read", trusted, "https://" + cnAddr + "/v1/records/routes/api.example.com", "", "Bearer " + readToken, 200, "api.example.com"},
		{"cache node read wrong token", trusted, "https://" + cnAddr + "/v1/records/routes/api.example.com", "", "Bearer " + wrongToken, 401, "token"},
		{"cache node without certificate", noCert, "https://" + cnAddr + "/v1/records/routes/api.example.com", "", "Bearer " + readToken, 0, ""},
		{"cache node admin", trusted, "https://" + cnAdmin + "/debug/records/routes/api.example.com", "", "Bearer " + adminToken, 200, `"version"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body, err := get(tc.client, tc.url, tc.host, tc.authz)
			if tc.status == 0 {
				if err == nil {
					t.Fatalf("status %d %q, want the handshake refused", status, body)
				}
				return
			}
			if err != nil || status != tc.status || !strings.Contains(body, tc.body) {
				t.Fatalf("status %d %q err %v, want %d containing %q", status, body, err, tc.status, tc.body)
			}
		})
	}
	// A cache node write with the wrong token changes nothing.
	req, _ := http.NewRequest("POST", "https://"+cnAddr+"/v1/log/trim?before=ffffffffffffffff", nil)
	req.Header.Set("Authorization", "Bearer "+wrongToken)
	if resp, err := trusted.Do(req); err != nil || resp.StatusCode != 401 {
		t.Fatalf("trim with a wrong token: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	var all strings.Builder
	all.WriteString(oneShots.String())
	for _, p := range []*process{pub, cn, sen} {
		all.WriteString(p.stdout.String())
		all.WriteString(p.stderr.String())
	}
	logs := all.String()
	if testing.Verbose() {
		t.Log(logs)
	}
	if !strings.Contains(logs, "level=DEBUG") && !strings.Contains(logs, "level=INFO") {
		t.Fatalf("nothing was logged: the check would prove nothing:\n%s", logs)
	}
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("the output contains the secret %q:\n%s", s, logs)
		}
	}
}

// TestDevClusterNoSecretsInLogs runs the whole dev cluster (publisher API,
// cache node, three sentinels joined by gossip) with every component
// logging at debug level into one buffer, drives writes with the token and
// requests with good, wrong and disabled API keys and admin tokens, and
// checks that no raw key or token was logged.
func TestDevClusterNoSecretsInLogs(t *testing.T) {
	const (
		token      = "dev_token_SECRET_9"
		wrongToken = "dev_wrong_SECRET_10"
		unknownKey = "dev_unknown_SECRET_11"
	)
	var logs testkit.SyncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c, err := devcluster.Start(context.Background(), devcluster.Config{DataDir: t.TempDir(), AnyPorts: true, Token: token, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	closed := false // Cluster.Close may run once only
	t.Cleanup(func() {
		if !closed {
			c.Close()
		}
	})
	req := func(method, url, host, authz, body string) int {
		t.Helper()
		r, err := http.NewRequest(method, url, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if host != "" {
			r.Host = host
		}
		if authz != "" {
			r.Header.Set("Authorization", authz)
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	routeB := `{"deployment_id":"dep_b","upstreams":["` + c.Upstreams[1] + `"],"require_key":true,"keyspace":"` + devcluster.Keyspace + `"}`
	for _, tc := range []struct {
		name, method, url, host, authz, body string
		status                               int
	}{
		{"publisher write", "PUT", c.PublishURL + "/v1/records/routes/b.localhost", "", "Bearer " + token, routeB, 200},
		{"publisher write, wrong token", "PUT", c.PublishURL + "/v1/records/routes/b.localhost", "", "Bearer " + wrongToken, routeB, 401},
		{"publisher import", "POST", c.PublishURL + "/v1/import", "", "Bearer " + token, `{"namespace":"routes","key":"c.localhost","value":{"upstreams":["` + c.Upstreams[0] + `"]}}` + "\nnot json\n", 200},
		{"publisher delete", "DELETE", c.PublishURL + "/v1/records/routes/c.localhost", "", "Bearer " + token, "", 200},
		{"cache node write, wrong token", "POST", c.CacheURL + "/v1/log/trim?before=1", "", "Bearer " + wrongToken, "", 401},
		{"good key", "GET", "http://" + c.Sentinels[0].Addr() + "/", devcluster.APIHost, "Bearer " + devcluster.GoodKey, "", 200},
		{"good key via the cache tier", "GET", "http://" + c.Sentinels[2].Addr() + "/", devcluster.APIHost, "Bearer " + devcluster.GoodKey, "", 200},
		{"disabled key", "GET", "http://" + c.Sentinels[1].Addr() + "/", devcluster.APIHost, "Bearer " + devcluster.DisabledKey, "", 403},
		{"unknown key", "GET", "http://" + c.Sentinels[1].Addr() + "/", devcluster.APIHost, "Bearer " + unknownKey, "", 401},
		{"admin debug", "GET", "http://" + c.Sentinels[0].AdminAddr() + "/debug/members", "", "Bearer " + token, "", 200},
		{"admin debug, wrong token", "GET", "http://" + c.Sentinels[0].AdminAddr() + "/debug/members", "", "Bearer " + wrongToken, "", 401},
	} {
		if got := req(tc.method, tc.url, tc.host, tc.authz, tc.body); got != tc.status {
			t.Errorf("%s: status %d, want %d", tc.name, got, tc.status)
		}
	}
	// The new route reaches the sentinels through gossip: keep asking until
	// it does, so that the gossip and refresh paths have logged too.
	testkit.Eventually(t, 10*time.Second, "the route written through the publisher API to reach sentinel-2", func() bool {
		return req("GET", "http://"+c.Sentinels[1].Addr()+"/", "b.localhost", "Bearer "+devcluster.GoodKey, "") == 200
	})
	c.Close() // flush what shutting down logs, too
	closed = true
	out := logs.String()
	t.Logf("%d log lines checked", strings.Count(out, "\n"))
	if !strings.Contains(out, "level=DEBUG") && !strings.Contains(out, "level=INFO") {
		t.Fatalf("nothing was logged: the check would prove nothing:\n%s", out)
	}
	for _, s := range []string{token, wrongToken, unknownKey, devcluster.GoodKey, devcluster.DisabledKey} {
		if strings.Contains(out, s) {
			t.Errorf("the logs contain the secret %q", s)
		}
	}
}
