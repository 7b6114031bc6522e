package publisher_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/dataplane/dataplane/publisher"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/sign"
)

// TestSignedWrites: with Config.Signer, everything the publisher writes
// carries a valid signature of the publisher's key: the stored record, its
// change log entry, what the Notifier spreads, deletes and imports alike;
// and the private key appears in no log line.
func TestSignedWrites(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		_, priv, err := sign.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		signer, _ := sign.NewSigner(priv)
		v, _ := sign.NewVerifier(signer.Public())
		e := newEnv(t, b.open(t), func(c *publisher.Config) { c.Signer = signer })
		ctx := testCtx(t)

		put, err := e.pub.Put(ctx, "routes", "a.example.com", []byte(`{"u":1}`))
		if err != nil {
			t.Fatal(err)
		}
		del, err := e.pub.Delete(ctx, "routes", "b.example.com")
		if err != nil {
			t.Fatal(err)
		}
		brought := record.Record{Namespace: "cfg", Key: "k", Value: []byte("x"), Version: record.MakeVersion(put.Version.Time(), 9)}
		if _, err := e.pub.PutVersion(ctx, brought); err != nil {
			t.Fatal(err)
		}
		for _, r := range []record.Record{put, del} {
			if err := v.VerifyRecord(r); err != nil {
				t.Errorf("returned record %s: %v", r.Key, err)
			}
		}
		for _, k := range [][2]string{{"routes", "a.example.com"}, {"routes", "b.example.com"}, {"cfg", "k"}} {
			got, err := e.store.Get(ctx, k[0], k[1], 0)
			if err != nil {
				t.Fatal(err)
			}
			if err := v.VerifyRecord(got); err != nil {
				t.Errorf("stored %s/%s: %v", k[0], k[1], err)
			}
		}
		log, err := e.store.ReadLog(ctx, 0, 10)
		if err != nil || len(log) != 3 {
			t.Fatalf("ReadLog = %+v, %v", log, err)
		}
		for _, c := range log {
			if err := v.VerifyChange(c); err != nil {
				t.Errorf("log entry %s: %v", c.Key, err)
			}
		}
		for _, r := range e.notify.records() {
			if err := v.VerifyRecord(r); err != nil {
				t.Errorf("notified %s: %v", r.Key, err)
			}
		}
		if strings.Contains(e.logs.String(), sign.EncodePrivateKey(priv)) {
			t.Fatal("the signing key was logged")
		}
	})
}

// TestUnsignedWithoutSigner: without a Signer, records are written as
// before, unsigned.
func TestUnsignedWithoutSigner(t *testing.T) {
	e := newEnv(t, backends[0].open(t), nil)
	r, err := e.pub.Put(testCtx(t), "cfg", "k", []byte("v"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := e.store.Get(testCtx(t), "cfg", "k", 0)
	if err != nil || got.Seal != nil || r.Seal != nil {
		t.Fatalf("stored %+v, %v; want unsigned", got, err)
	}
	v, _ := sign.NewVerifier(make([]byte, 32))
	if err := v.VerifyRecord(got); !errors.Is(err, sign.ErrUnsigned) {
		t.Fatalf("verify = %v", err)
	}
}
