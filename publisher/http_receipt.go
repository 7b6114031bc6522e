package publisher

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/dataplane/dataplane/gossip"
	"github.com/dataplane/dataplane/record"
)

// MaxWait is the longest ?wait a write request may ask for.
const MaxWait = 5 * time.Minute

// receiptResult is the answer to a write that waited for a receipt.
type receiptResult struct {
	writeResult
	Receipt receiptJSON `json:"receipt"`
}

type receiptJSON struct {
	gossip.Receipt
	Version  string  `json:"version"`
	WaitedMS float64 `json:"waited_ms"`
}

// waitParams parses ?wait and ?share, answering 400 for bad ones (and for
// a wait on a publisher that cannot give receipts).
func (h *handler) waitParams(w http.ResponseWriter, r *http.Request) (time.Duration, float64, bool) {
	q := r.URL.Query()
	ws, ss := q.Get("wait"), q.Get("share")
	if ws == "" {
		if ss != "" {
			writeParamError(w, "share", "share needs wait (e.g. ?wait=5s&share=0.9)")
			return 0, 0, false
		}
		return 0, 0, true
	}
	wait, err := time.ParseDuration(ws)
	if err != nil || wait <= 0 || wait > MaxWait {
		writeParamError(w, "wait", fmt.Sprintf("%q: want a duration in (0, %s], e.g. 5s", ws, MaxWait))
		return 0, 0, false
	}
	share := 1.0
	if ss != "" {
		share, err = strconv.ParseFloat(ss, 64)
		if err != nil || !(share > 0 && share <= 1) {
			writeParamError(w, "share", fmt.Sprintf("%q: want a fraction in (0, 1]", ss))
			return 0, 0, false
		}
	}
	if _, ok := h.p.notify.(Receipter); !ok {
		writeParamError(w, "wait", "this publisher is not a gossip member, so it cannot wait for receipts (start it with gossip)")
		return 0, 0, false
	}
	if err := h.p.CheckShare(share); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("share %v: %v", share, err))
		return 0, 0, false
	}
	return wait, share, true
}

// writeWaited answers a write, after waiting for its receipt if asked.
func (h *handler) writeWaited(w http.ResponseWriter, r *http.Request, rec record.Record, wait time.Duration, share float64) {
	if wait == 0 {
		writeWrite(w, rec)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	rc, err := h.p.Receipt(ctx, rec, share)
	status := http.StatusOK
	switch {
	case err == nil:
	case errors.Is(err, ErrNotApplied):
		status = http.StatusAccepted
	default:
		h.fail(w, r, err)
		return
	}
	w.Header().Set(VersionHeader, rec.Version.String())
	writeJSON(w, status, receiptResult{
		writeResult: writeResult{Namespace: rec.Namespace, Key: rec.Key, Version: rec.Version.String(), Tombstone: rec.Tombstone},
		Receipt:     receiptJSON{Receipt: rc, Version: rec.Version.String(), WaitedMS: float64(rc.Waited.Microseconds()) / 1000},
	})
}
