package gossip

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dataplane/dataplane/checkpoint"
	"github.com/dataplane/dataplane/internal/gossiptune"
	"github.com/dataplane/dataplane/record"
)

func sampleChanges() []change {
	return []change{
		{rec: record.Record{Namespace: "routes", Key: "example.com", Value: []byte(`{"u":"http://x"}`), Version: 1 << 20}, inline: true, path: pathPush},
		{rec: record.Record{Namespace: "keys", Key: "ks/abc", Version: 7}, inline: false, path: pathGossip},
		{rec: record.Record{Namespace: "keys", Key: "ks/gone", Version: 9, Tombstone: true}, inline: true, path: pathRelay},
		{rec: record.Record{Namespace: "a", Key: "ü/ключ", Value: bytes.Repeat([]byte{0}, MaxInlineValue), Version: 1<<63 + 5}, inline: true, path: pathGossip},
		{rec: record.Record{Namespace: "n", Key: "empty", Value: []byte{}, Version: 3}, inline: true, path: pathPush},
	}
}

func TestChangeRoundTrip(t *testing.T) {
	withSender := sampleChanges()[0]
	withSender.path, withSender.from = pathRelay, "node-07"
	withShare := withSender
	withShare.share = share{i: 1, k: 3}
	for _, c := range append(sampleChanges(), withSender, withShare) {
		b := encodeChange(c)
		if len(b) > MaxMessageSize {
			t.Errorf("%s: %d bytes, over MaxMessageSize %d", c.rec.Key, len(b), MaxMessageSize)
		}
		got, err := decodeChange(b)
		if err != nil {
			t.Fatalf("%s: %v", c.rec.Key, err)
		}
		if len(c.rec.Value) == 0 {
			c.rec.Value = nil
		}
		if !reflect.DeepEqual(got, c) {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, c)
		}
	}
}

func TestDigestRoundTripAndTruncation(t *testing.T) {
	cs := sampleChanges()
	d := digest{highWater: 1<<63 + 5, changes: cs}
	b := encodeDigest(d, 1<<16)
	got, err := decodeDigest(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.truncated || len(got.changes) != len(cs) || got.highWater != d.highWater {
		t.Fatalf("got truncated=%v %d changes hw=%s", got.truncated, len(got.changes), got.highWater)
	}
	for i, c := range got.changes {
		if c.path != pathDigest || c.rec.Version != cs[i].rec.Version || c.inline != cs[i].inline {
			t.Errorf("entry %d: %+v", i, c)
		}
	}
	// A small budget keeps the newest entries that fit and says so.
	small := encodeDigest(d, 200)
	if len(small) > 200 {
		t.Errorf("digest of %d bytes over its 200-byte budget", len(small))
	}
	got, err = decodeDigest(small)
	if err != nil {
		t.Fatal(err)
	}
	if !got.truncated || len(got.changes) == 0 || len(got.changes) >= len(cs) {
		t.Errorf("small digest: truncated=%v with %d changes", got.truncated, len(got.changes))
	}
}

func TestDecodeRejectsGarbage(t *testing.T) {
	good := encodeChange(sampleChanges()[0])
	dg := encodeDigest(digest{highWater: 1 << 20, changes: sampleChanges()[:1]}, 4096)
	flip := func(b []byte, i int, x byte) []byte { b = append([]byte(nil), b...); b[i] ^= x; return b }
	withCRC := func(b []byte) []byte { // re-seal a tampered digest so the check below the CRC runs
		b = append([]byte(nil), b[:len(b)-4]...)
		return append(b, crcBytes(b)...)
	}
	cases := map[string][]byte{
		"empty":              nil,
		"unknown kind":       {0x00, 1, 2, 3},
		"kind only":          {kindChange},
		"bad flags":          flip(good, 1, 0x80),
		"bad path":           func() []byte { b := append([]byte(nil), good...); b[1] = flagInline | 3<<pathShift; return b }(),
		"truncated":          good[:len(good)-3],
		"trailing":           append(append([]byte(nil), good...), 1),
		"bit flip":           flip(good, len(good)/2, 0x10),
		"oversized":          append([]byte{kindChange, 1}, make([]byte, MaxMessageSize)...),
		"not inline w/value": withRecordFlags(t, sampleChanges()[0], 0),
		"digest truncated":   dg[:len(dg)-1],
		"digest bad crc":     flip(dg, 3, 1),
		"digest bad count":   withCRC(append(append([]byte(nil), dg[:digestHeader]...), 0xff, 0xff, 0xff, 0xff, 0x0f)),
		"digest hw too low":  withCRC(func() []byte { b := append([]byte(nil), dg...); clear(b[2:10]); return b }()),
		"digest bad flags":   withCRC(flip(dg, 1, 0x40)),
		"zero version":       encodeChangeUnchecked(record.Record{Namespace: "ns", Key: "k", Version: 0}),
		"bad namespace":      encodeChangeUnchecked(record.Record{Namespace: "NS!", Key: "k", Version: 1}),
		"control char key":   encodeChangeUnchecked(record.Record{Namespace: "ns", Key: "a\nb", Version: 1}),
		"sender on gossip": func() []byte {
			b := encodeChange(change{rec: sampleChanges()[0].rec, inline: true, path: pathPush, from: "x"})
			b[1] &^= pathMask
			return b
		}(),
		"empty sender": func() []byte {
			b := encodeChange(change{rec: sampleChanges()[0].rec, inline: true, path: pathPush, from: "x"})
			b[2] = 0
			return b
		}(),
		"share on push": func() []byte {
			b := encodeChange(change{rec: sampleChanges()[0].rec, inline: true, path: pathRelay, share: share{0, 2}})
			b[1] = b[1]&^pathMask | byte(pathPush)<<pathShift
			return b
		}(),
		"share index too big": func() []byte {
			b := encodeChange(change{rec: sampleChanges()[0].rec, inline: true, path: pathRelay, share: share{0, 2}})
			b[2] = 2
			return b
		}(),
		"share of one": func() []byte {
			b := encodeChange(change{rec: sampleChanges()[0].rec, inline: true, path: pathRelay, share: share{0, 2}})
			b[3] = 1
			return b
		}(),
		"ack truncated":     encodeAck(ack{ns: "ns", key: "k", version: 1, from: "n"})[:12],
		"ack zero version":  encodeAck(ack{ns: "ns", key: "k", version: 0, from: "n"}),
		"ack bad namespace": encodeAck(ack{ns: "NS", key: "k", version: 1, from: "n"}),
		"ack trailing":      append(encodeAck(ack{ns: "ns", key: "k", version: 1, from: "n"}), 0),
		"refusal reason 0":  append(appendAckLike(nil, kindRefusal, ack{ns: "ns", key: "k", version: 1, from: "n"}), 0),
		"refusal reason 99": append(appendAckLike(nil, kindRefusal, ack{ns: "ns", key: "k", version: 1, from: "n"}), 99),
		"refusal no reason": appendAckLike(nil, kindRefusal, ack{ns: "ns", key: "k", version: 1, from: "n"}),
		"query trailing":    append(encodeQuery(ack{ns: "ns", key: "k", version: 1, from: "n"}), 0),
		"checkpoint on the gossip path": func() []byte {
			b := encodeCheckpointMsg(cpMsg{raw: sampleCheckpoint(), path: pathPush})
			b[1] = 0
			return b
		}(),
		"checkpoint share on a push": func() []byte {
			b := encodeCheckpointMsg(cpMsg{raw: sampleCheckpoint(), path: pathRelay, share: share{0, 2}})
			b[1] = byte(pathPush)<<pathShift | flagShare
			return b
		}(),
		"checkpoint truncated": func() []byte {
			b := encodeCheckpointMsg(cpMsg{raw: sampleCheckpoint(), path: pathPush})
			return b[:len(b)-1]
		}(),
		"checkpoint oversized": append(encodeCheckpointMsg(cpMsg{raw: sampleCheckpoint(), path: pathPush}), make([]byte, checkpoint.MaxEncodedSize)...),
	}
	for name, b := range cases {
		_, err := decode(b)
		if err == nil {
			t.Errorf("%s: decoded without error", name)
			continue
		}
		if !errors.Is(err, record.ErrCorrupt) {
			t.Errorf("%s: error %v does not wrap record.ErrCorrupt", name, err)
		}
	}
}

func crcBytes(b []byte) []byte {
	s := crcOf(b)
	return []byte{byte(s >> 24), byte(s >> 16), byte(s >> 8), byte(s)}
}

// withRecordFlags encodes c and then overwrites the message flags.
func withRecordFlags(t *testing.T, c change, flags byte) []byte {
	b := encodeChange(c)
	b[1] = flags
	return b
}

// encodeChangeUnchecked encodes a record that may break record's rules.
func encodeChangeUnchecked(r record.Record) []byte {
	return record.AppendRecord([]byte{kindChange, flagInline}, r)
}

// FuzzDecode: no input may panic the decoder, every error wraps
// record.ErrCorrupt, and whatever decodes re-encodes to something that
// decodes to the same message.
func FuzzDecode(f *testing.F) {
	for _, s := range seedCorpus() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decode(b)
		if err != nil {
			if !errors.Is(err, record.ErrCorrupt) {
				t.Fatalf("error %v does not wrap record.ErrCorrupt", err)
			}
			return
		}
		switch {
		case m.change != nil:
			if len(b) > MaxMessageSize {
				t.Fatalf("accepted %d bytes", len(b))
			}
			again, err := decodeChange(encodeChange(*m.change))
			if err != nil || !reflect.DeepEqual(again, *m.change) {
				t.Fatalf("re-encode: %v\n got %+v\nwant %+v", err, again, *m.change)
			}
		case m.digest != nil:
			d := *m.digest
			for i := range d.changes {
				if err := d.changes[i].rec.Validate(); err != nil {
					t.Fatalf("digest entry %d invalid: %v", i, err)
				}
			}
			again, err := decodeDigest(encodeDigest(d, MaxDigestSize))
			if err != nil || again.highWater != d.highWater || len(again.changes) != len(d.changes) {
				t.Fatalf("re-encode digest: %v", err)
			}
		case m.ack != nil:
			again, err := decodeAck(encodeAck(*m.ack))
			if err != nil || again != *m.ack {
				t.Fatalf("re-encode ack: %v", err)
			}
		case m.refusal != nil:
			again, err := decodeRefusal(encodeRefusal(*m.refusal))
			if err != nil || again != *m.refusal {
				t.Fatalf("re-encode refusal: %v", err)
			}
		case m.query != nil:
			again, err := decodeQuery(encodeQuery(*m.query))
			if err != nil || again != *m.query {
				t.Fatalf("re-encode query: %v", err)
			}
		case m.checkpoint != nil:
			c := *m.checkpoint
			raw, err := c.cp.Marshal()
			if err != nil || !bytes.Equal(raw, c.raw) {
				t.Fatalf("checkpoint re-marshals to other bytes: %v", err)
			}
			again, err := decodeCheckpointMsg(encodeCheckpointMsg(c))
			if err != nil || !bytes.Equal(again.raw, c.raw) || again.path != c.path || again.share != c.share {
				t.Fatalf("re-encode checkpoint message: %v", err)
			}
		default:
			t.Fatal("decode returned nothing")
		}
	})
}

func seedCorpus() [][]byte {
	var out [][]byte
	for _, c := range sampleChanges() {
		out = append(out, encodeChange(c))
	}
	out = append(out,
		encodeDigest(digest{highWater: 1<<63 + 5, changes: sampleChanges()}, 1<<16),
		encodeDigest(digest{highWater: 9}, 64),
		[]byte{kindChange, flagInline},
		[]byte{kindDigest},
		encodeChange(change{rec: sampleChanges()[0].rec, inline: true, path: pathRelay, from: "node-07"}),
		encodeAck(ack{ns: "routes", key: "example.com", version: 1 << 20, from: "node-01"}),
		encodeChange(change{rec: sampleChanges()[0].rec, inline: true, path: pathRelay, from: "node-07", share: share{i: 1, k: 2}}),
		encodeRefusal(refusal{ack: ack{ns: "keys", key: "default/abc", version: 1 << 40, from: "node-02"}, reason: "unsigned"}),
		encodeQuery(ack{ns: "routes", key: "example.com", version: 1 << 40, from: "publisher"}),
		encodeCheckpointMsg(cpMsg{raw: sampleCheckpoint(), path: pathPush}),
		encodeCheckpointMsg(cpMsg{raw: sampleCheckpoint(), path: pathRelay, share: share{i: 1, k: 3}}),
	)
	return out
}

// sampleCheckpoint is an unsigned checkpoint's encoding (gossip checks no
// signature, so the fuzzer needs no key).
func sampleCheckpoint() []byte {
	c := &checkpoint.Checkpoint{Namespace: "keys", Version: 1 << 40, Prev: 1 << 39, Count: 7, IssuedAt: time.UnixMilli(1_700_000_000_000), ExpiresAt: time.UnixMilli(1_700_000_300_000)}
	b, err := c.Marshal()
	if err != nil {
		panic(err)
	}
	return b
}

// TestWriteSeedCorpus (re)writes testdata/fuzz/FuzzDecode from seedCorpus
// when GOSSIP_WRITE_CORPUS is set, and otherwise checks the files are there.
func TestWriteSeedCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	if os.Getenv("GOSSIP_WRITE_CORPUS") == "" {
		entries, err := os.ReadDir(dir)
		if err != nil || len(entries) < len(seedCorpus()) {
			t.Fatalf("seed corpus in %s: %d files, err %v (run with GOSSIP_WRITE_CORPUS=1)", dir, len(entries), err)
		}
		return
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, s := range seedCorpus() {
		var q strings.Builder
		fmt.Fprintf(&q, "go test fuzz v1\n[]byte(%q)\n", s)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(q.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPresetTuning: the presets hold the protocol tuning that was
// Config's fields before issue 22 (BENCHMARKS.md and TestFleet measure
// these values), a Cluster not from a preset runs DefaultLANConfig's, and
// Tune changes a copy's only.
func TestPresetTuning(t *testing.T) {
	lan := gossiptune.Tuning{
		RelaysPerRegion: 2, PushAckTimeout: 25 * time.Millisecond, PushRetries: 8,
		ReconnectInterval: 10 * time.Second, ReconnectTimeout: time.Hour,
		DigestMaxBytes: 32 << 10, RecentMax: 16384, QueueMax: 4096,
	}
	wan, local := lan, lan
	wan.PushAckTimeout, wan.ReconnectInterval = 300*time.Millisecond, 30*time.Second
	local.ReconnectInterval = 2 * time.Second
	for name, tc := range map[string]struct {
		c    Config
		want gossiptune.Tuning
		bind string
	}{
		"lan":   {DefaultLANConfig(), lan, "0.0.0.0:7946"},
		"wan":   {DefaultWANConfig(), wan, "0.0.0.0:7946"},
		"local": {DefaultLocalConfig(), local, "127.0.0.1:0"},
	} {
		if tc.c.tune != tc.want || tc.c.BindAddr != tc.bind || tc.c.InlineValueMax != 512 {
			t.Errorf("%s preset: tuning %+v, BindAddr %q, InlineValueMax %d; want %+v, %q, 512", name, tc.c.tune, tc.c.BindAddr, tc.c.InlineValueMax, tc.want, tc.bind)
		}
	}
	c := Config{Cluster: Cluster{Region: "r", Insecure: true}}
	if err := c.validate(); err != nil || c.tune != lan {
		t.Errorf("a Cluster not from a preset: tuning %+v, %v; want DefaultLANConfig's %+v", c.tune, err, lan)
	}
	base := DefaultWANConfig()
	tuned := base
	tuned.Tune(func(t *gossiptune.Tuning) { t.PushRetries = 0 })
	if tuned.tune.PushRetries != 0 || base.tune != wan {
		t.Errorf("Tune: copy %+v, preset's %+v", tuned.tune, base.tune)
	}
	var zero Cluster
	zero.Tune(func(t *gossiptune.Tuning) { t.QueueMax = 7 })
	if want := lan; zero.tune.QueueMax != 7 || zero.tune.PushAckTimeout != want.PushAckTimeout {
		t.Errorf("Tune on a zero Cluster: %+v, want DefaultLANConfig's with QueueMax 7", zero.tune)
	}
}

func TestConfigValidate(t *testing.T) {
	cases := map[string]func(c *Config){
		"empty region":    func(c *Config) { c.Region = "" },
		"bad region":      func(c *Config) { c.Region = "EU West" },
		"bad key":         func(c *Config) { c.SecretKeys = [][]byte{[]byte("short")} },
		"inline too big":  func(c *Config) { c.InlineValueMax = MaxInlineValue + 1 },
		"inline over UDP": func(c *Config) { c.InlineValueMax = MaxInlineValue },
		"negative inline": func(c *Config) { c.InlineValueMax = -1 },
		"no relays":       func(c *Config) { c.tune.RelaysPerRegion = 0 },
		"tiny digest":     func(c *Config) { c.tune.DigestMaxBytes = 10 },
		"no recent":       func(c *Config) { c.tune.RecentMax = 0 },
		"no queue":        func(c *Config) { c.tune.QueueMax = 0 },
		"no reconnect":    func(c *Config) { c.tune.ReconnectInterval = 0 },
		"bind no port":    func(c *Config) { c.BindAddr = "127.0.0.1" },
		"bind bad port":   func(c *Config) { c.BindAddr = "127.0.0.1:65536" },
		"advertise host":  func(c *Config) { c.AdvertiseAddr = "10.0.0.1" },
	}
	for name, mutate := range cases {
		c := DefaultLocalConfig()
		c.Insecure = true // each case fails for its own reason
		mutate(&c)
		if err := c.validate(); err == nil {
			t.Errorf("%s: validated", name)
		}
	}
	for name, c := range map[string]Config{"lan": DefaultLANConfig(), "wan": DefaultWANConfig(), "local": DefaultLocalConfig()} {
		c.Insecure = true
		if err := c.validate(); err != nil {
			t.Errorf("%s preset: %v", name, err)
		}
	}
	for addr, want := range map[string]struct {
		host string
		port int
	}{"": {"", 0}, "0.0.0.0:7946": {"0.0.0.0", 7946}, "[::1]:0": {"::1", 0}, "node-1.example:7000": {"node-1.example", 7000}} {
		c := DefaultLocalConfig()
		c.Insecure = true
		c.BindAddr, c.AdvertiseAddr = addr, addr
		if err := c.validate(); err != nil || c.bindHost != want.host || c.bindPort != want.port || c.advHost != want.host || c.advPort != want.port {
			t.Errorf("BindAddr and AdvertiseAddr %q: %q %d, %q %d, %v; want %q %d", addr, c.bindHost, c.bindPort, c.advHost, c.advPort, err, want.host, want.port)
		}
	}
	c := DefaultLocalConfig()
	c.Name = "node-01"
	c.Insecure = true
	c.InlineValueMax = 800 // room is kept for a record.Seal (issue 12)
	if err := c.validate(); err != nil {
		t.Errorf("800-byte inline values should fit a 1400-byte packet: %v", err)
	}
	if a, err := decodeAck(encodeAck(ack{ns: "ns", key: "k", version: 3, from: "n"})); err != nil || a.version != 3 {
		t.Errorf("ack round trip: %+v, %v", a, err)
	}
}
