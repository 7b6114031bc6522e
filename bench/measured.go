package bench

import "fmt"

// Measured returns the results that have measurements: options that ran
// and reached their steady phase, in table order.
func (r *Report) Measured() []*Result {
	var out []*Result
	for _, res := range r.Results {
		if res.Skipped == "" && res.SteadySeconds > 0 {
			out = append(out, res)
		}
	}
	return out
}

// SteadyStart returns when the steady phase began, in seconds since the
// option's start, or 0 if it never did.
func (res *Result) SteadyStart() float64 {
	for _, p := range res.Phases {
		if p.Name == phaseSteady {
			return p.At
		}
	}
	return 0
}

// PhaseWindow returns the start and end (seconds since the option's start)
// of the first phase called name, or -1, -1 if it never ran.
func (res *Result) PhaseWindow(name string) (from, to float64) {
	for i, p := range res.Phases {
		if p.Name == name {
			if i+1 < len(res.Phases) {
				return p.At, res.Phases[i+1].At
			}
			return p.At, p.At
		}
	}
	return -1, -1
}

// Label names an option in a chart legend: its ID, where records live and
// how changes travel.
func (o Option) Label() string {
	where := string(o.Origin)
	if o.Tier {
		where += " + cache nodes"
	}
	how := "TTL"
	switch {
	case o.Gossip && o.Inline:
		how = "gossip, values inline + log"
	case o.Gossip:
		how = "gossip invalidation"
	}
	return fmt.Sprintf("%s: %s, %s", o.ID, where, how)
}
