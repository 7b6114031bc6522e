package admin

import (
	"time"

	"github.com/dataplane/dataplane/gossip"
)

// pageRefusal is a change a member refused, as the fleet page shows it:
// in red in the list at the top, and in the member's row.
type pageRefusal struct {
	Namespace, Key string
	Version        pageVersion
	Reason         string // "unsigned", "bad_signature", ...
}

// memberRefusals returns the last changes m refused, newest first, as the
// fleet page shows them: in red in the list at the top, and in the
// "refused" column of the member's row (see TestFleetPageRefusals).
func memberRefusals(m gossip.MemberReport, now time.Time) []pageRefusal {
	out := make([]pageRefusal, 0, len(m.Refused))
	for _, r := range m.Refused {
		out = append(out, pageRefusal{Namespace: r.Namespace, Key: r.Key, Version: versionAt(r.Version, now), Reason: r.Reason})
	}
	return out
}
