package wire

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/dataplane/dataplane/record"
)

func TestEscapeKey(t *testing.T) {
	for _, k := range []string{"a", "..", "../x", "/lead", "a//b", "50%", "q?x=1#f", "ünï/日本", "sp ace", "~t", "A-z_0"} {
		e := EscapeKey(k)
		if strings.ContainsAny(e, "/.?#~ ") {
			t.Errorf("EscapeKey(%q) = %q keeps a character a router may act on", k, e)
		}
		if got, err := url.PathUnescape(e); err != nil || got != k {
			t.Errorf("EscapeKey(%q) = %q unescapes to %q, %v", k, e, got, err)
		}
	}
	if got := RecordPath("routes", "a/b"); got != "/v1/records/routes/a%2Fb" {
		t.Errorf("RecordPath = %q", got)
	}
}

func TestETag(t *testing.T) {
	if got, err := ParseETag(ETag(0x1234)); err != nil || got != 0x1234 {
		t.Fatalf("round trip: %v, %v", got, err)
	}
	if got, err := ParseETag(` W/"00000000000000ff"`); err != nil || got != 0xff {
		t.Fatalf("weak: %v, %v", got, err)
	}
	for _, bad := range []string{"", `"`, `""`, "0000000000000001", `"xyz"`, `"00000000000000001"`, `*`, `"-1"`} {
		if _, err := ParseETag(bad); !errors.Is(err, record.ErrInvalid) {
			t.Errorf("ParseETag(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestDecodeLogPage(t *testing.T) {
	for _, tc := range []struct {
		body string
		ok   bool
	}{
		{`{"changes":[]}`, true},
		{`{"changes":[{"namespace":"a","key":"b","version":"11"},{"namespace":"a","key":"c","version":"11","tombstone":true}]}`, true},
		{`{"changes":[{"namespace":"a","key":"b","version":"10"}]}`, false},                                                                                       // not after 0x10
		{`{"changes":[{"namespace":"a","key":"b","version":"zz"}]}`, false},                                                                                       // bad version
		{`{"changes":[{"namespace":"A","key":"b","version":"11"}]}`, false},                                                                                       // bad namespace
		{`{"changes":[{"namespace":"a","key":"b","version":"12"},{"namespace":"a","key":"b","version":"11"}]}`, false},                                            // order
		{`{"changes":[{"namespace":"a","key":"b","version":"11"},{"namespace":"a","key":"b","version":"12"},{"namespace":"a","key":"b","version":"13"}]}`, false}, // over limit
		{`{"changes":`, false},
	} {
		cs, err := DecodeLogPage([]byte(tc.body), 0x10, 2)
		if tc.ok != (err == nil) {
			t.Errorf("%s: %v, %v", tc.body, cs, err)
		}
		if err != nil && (!errors.Is(err, record.ErrCorrupt) || errors.Is(err, record.ErrInvalid)) {
			t.Errorf("%s: %v should wrap ErrCorrupt only", tc.body, err)
		}
	}
}
