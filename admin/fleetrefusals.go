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

// memberRefusals is the hook through which refusals reach the fleet page:
// the last changes m refused, newest first. The page, its red list at the
// top and the "refused" column are built on what it returns (see
// TestFleetPageRefusals).
//
// gossip.MemberReport carries no refusals on main yet: the gossiptrust
// branch adds MemberReport.Refused []gossip.RefusedChange{Namespace, Key,
// Version, Reason}. Once it lands, the body becomes:
//
//	out := make([]pageRefusal, 0, len(m.Refused))
//	for _, r := range m.Refused {
//		out = append(out, pageRefusal{Namespace: r.Namespace, Key: r.Key, Version: versionAt(r.Version, now), Reason: r.Reason})
//	}
//	return out
func memberRefusals(m gossip.MemberReport, now time.Time) []pageRefusal {
	return nil
}
