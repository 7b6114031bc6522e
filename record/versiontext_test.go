package record_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dataplane/dataplane/record"
)

// TestVersionJSONIsString: a version above 2^53 goes out as its hex string
// and comes back exact; as a number, JavaScript would round it.
func TestVersionJSONIsString(t *testing.T) {
	v := record.MakeVersion(time.UnixMilli(1796000000123), 7) // > 2^53
	if uint64(v) <= 1<<53 {
		t.Fatalf("test version %d is not above 2^53", uint64(v))
	}
	type doc struct {
		V      record.Version            `json:"v"`
		ByName map[string]record.Version `json:"by_name"`
		ByVer  map[record.Version]int    `json:"by_ver"`
	}
	in := doc{V: v, ByName: map[string]record.Version{"routes": v}, ByVer: map[record.Version]int{v: 1}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"v":"` + v.String() + `","by_name":{"routes":"` + v.String() + `"},"by_ver":{"` + v.String() + `":1}}`
	if string(b) != want {
		t.Fatalf("marshal: got %s, want %s", b, want)
	}
	var out doc
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if out.V != v || out.ByName["routes"] != v || out.ByVer[v] != 1 {
		t.Fatalf("round trip: got %+v, want %+v", out, in)
	}
}

func TestParseVersion(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want record.Version
		ok   bool
	}{
		{"0", 0, true},
		{"1f", 0x1f, true},
		{"0196a3f1c2d40007", 0x0196a3f1c2d40007, true},
		{"FFFFFFFFFFFFFFFF", 1<<64 - 1, true},
		{"", 0, false},
		{"0x1f", 0, false},
		{"1_0", 0, false},
		{"-1", 0, false},
		{"10000000000000000", 0, false}, // 17 digits
		{"g", 0, false},
	} {
		got, err := record.ParseVersion(tc.in)
		if tc.ok && (err != nil || got != tc.want) {
			t.Errorf("ParseVersion(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
		if !tc.ok && !errors.Is(err, record.ErrInvalid) {
			t.Errorf("ParseVersion(%q) = %v, %v; want an error wrapping ErrInvalid", tc.in, got, err)
		}
	}
	var v record.Version
	if err := json.Unmarshal([]byte(`117744169707438080`), &v); err == nil {
		t.Errorf("a JSON number decoded as a version (%v): numbers are not the convention", v)
	}
}

// FuzzVersionText: any text either fails with ErrInvalid or decodes to a
// version whose String decodes to the same version.
func FuzzVersionText(f *testing.F) {
	for _, s := range []string{"0", "0196a3f1c2d40007", "ffffffffffffffff", "", "0x1", "1_0", strings.Repeat("f", 17)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var v record.Version
		err := v.UnmarshalText([]byte(s))
		if err != nil {
			if !errors.Is(err, record.ErrInvalid) {
				t.Fatalf("%q: error %v does not wrap ErrInvalid", s, err)
			}
			return
		}
		b, _ := v.MarshalText()
		var w record.Version
		if err := w.UnmarshalText(b); err != nil || w != v {
			t.Fatalf("%q -> %v -> %s -> %v, %v", s, v, b, w, err)
		}
	})
}
