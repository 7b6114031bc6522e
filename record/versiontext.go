package record

import (
	"fmt"
	"strconv"
)

// Versions travel through every JSON API (the publisher's answers, its
// receipts, the watch stream, the fleet page's data, the debug views) in one
// form: the string String writes, 16 hex digits. A 64-bit version sent as a
// JSON number is rounded above 2^53 by JavaScript and many JSON libraries,
// and a version's value is routinely above that (milliseconds << 16).

// ParseVersion parses a version written in hex: String's form, 1 to 16
// digits. The error wraps ErrInvalid.
func ParseVersion(s string) (Version, error) {
	if len(s) == 0 || len(s) > 16 {
		return 0, fmt.Errorf("%w: version %.40q: want 1 to 16 hex digits", ErrInvalid, s)
	}
	v, err := strconv.ParseUint(s, 16, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: version %.40q: want 1 to 16 hex digits", ErrInvalid, s)
	}
	return Version(v), nil
}

// MarshalText implements encoding.TextMarshaler: String's form, so that
// encoding/json writes a Version as a JSON string ("0196a3f1c2d40000"),
// also as a map key.
func (v Version) MarshalText() ([]byte, error) {
	return []byte(v.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler, accepting what
// ParseVersion accepts.
func (v *Version) UnmarshalText(b []byte) error {
	p, err := ParseVersion(string(b))
	if err != nil {
		return err
	}
	*v = p
	return nil
}
