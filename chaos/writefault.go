package chaos

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/record"
)

// Step is one write a publish makes, in the order it makes them.
type Step int

// The steps of a publish (publisher.Publisher's commit).
const (
	// StepNote is origin.Pending.PutPending, before the compare-and-swap.
	StepNote Step = iota
	// StepCAS is origin.Store.CompareAndSwap.
	StepCAS
	// StepLog is origin.Store.AppendLog.
	StepLog
	// StepClear is origin.Pending.DeletePending, once the write is
	// acknowledged.
	StepClear
)

// String names the step.
func (s Step) String() string {
	switch s {
	case StepNote:
		return "note"
	case StepCAS:
		return "cas"
	case StepLog:
		return "log"
	case StepClear:
		return "clear"
	}
	return fmt.Sprintf("step(%d)", int(s))
}

// ErrCrashed is what every call to a crashed WriteFaults store returns.
var ErrCrashed = errors.New("chaos: publisher crashed")

// WriteHook runs before a write step of a publish and decides its fate:
// nil lets the write through (after any delay the hook itself takes),
// ErrCrashed kills the store's user at that point (this call and every
// later one fail, as a process that died), any other error fails this call
// alone.
type WriteHook func(ctx context.Context, step Step, c record.Change) error

// WriteFaults wraps the real origin.Store a publisher writes to and injects
// faults at each step of a publish: delays, failures and crashes. One
// WriteFaults stands for one publisher process: a crash makes it fail every
// call, reads included; a restarted publisher gets a new WriteFaults over
// the same store. It forwards origin.Pending when the wrapped store keeps
// notes.
type WriteFaults struct {
	origin.Store
	// Sent, if set, is called with every record a compare-and-swap is
	// sent to store, before it is sent (set it before use): the chaos
	// checker learns of every version that may be served, including
	// writes that land after their caller gave up on them (a timed-out
	// request the server still applies), which no return value reports.
	Sent func(rec record.Record)
	// Landed, if set, is called with every record whose compare-and-swap
	// the store accepted (set it before use): of several records sent
	// under one version (two publishers whose clocks gave the same one),
	// it tells the checker which one the store holds.
	Landed func(rec record.Record)

	pend    origin.Pending // nil when the store keeps no notes
	hook    WriteHook
	crashed atomic.Bool
	steps   [StepClear + 1]atomic.Int64 // writes attempted per step
}

var (
	_ origin.Store   = (*WriteFaults)(nil)
	_ origin.Pending = (*WriteFaults)(nil)
)

// NewWriteFaults wraps s; hook may be nil (no faults).
func NewWriteFaults(s origin.Store, hook WriteHook) *WriteFaults {
	w := &WriteFaults{Store: s, hook: hook}
	w.pend, _ = s.(origin.Pending)
	return w
}

// Crashed reports whether a hook crashed the store.
func (w *WriteFaults) Crashed() bool { return w.crashed.Load() }

// Steps returns how many writes of step were attempted.
func (w *WriteFaults) Steps(step Step) int64 { return w.steps[step].Load() }

func (w *WriteFaults) before(ctx context.Context, step Step, c record.Change) error {
	w.steps[step].Add(1)
	if w.crashed.Load() {
		return fmt.Errorf("%s %s/%s: %w", step, c.Namespace, c.Key, ErrCrashed)
	}
	if w.hook == nil {
		return nil
	}
	err := w.hook(ctx, step, c)
	if errors.Is(err, ErrCrashed) {
		w.crashed.Store(true)
	}
	if err != nil {
		return fmt.Errorf("%s %s/%s: %w", step, c.Namespace, c.Key, err)
	}
	return nil
}

func (w *WriteFaults) alive(what string) error {
	if w.crashed.Load() {
		return fmt.Errorf("%s: %w", what, ErrCrashed)
	}
	return nil
}

// Get implements origin.Store.
func (w *WriteFaults) Get(ctx context.Context, ns, key string, ifNewer record.Version) (record.Record, error) {
	if err := w.alive("get"); err != nil {
		return record.Record{}, err
	}
	return w.Store.Get(ctx, ns, key, ifNewer)
}

// CompareAndSwap implements origin.Store.
func (w *WriteFaults) CompareAndSwap(ctx context.Context, rec record.Record, prev record.Version) error {
	if err := w.before(ctx, StepCAS, rec.Change()); err != nil {
		return err
	}
	if w.Sent != nil {
		w.Sent(rec)
	}
	err := w.Store.CompareAndSwap(ctx, rec, prev)
	if err == nil && w.Landed != nil {
		w.Landed(rec)
	}
	return err
}

// AppendLog implements origin.Store.
func (w *WriteFaults) AppendLog(ctx context.Context, c record.Change) error {
	if err := w.before(ctx, StepLog, c); err != nil {
		return err
	}
	return w.Store.AppendLog(ctx, c)
}

// ReadLog implements origin.Store.
func (w *WriteFaults) ReadLog(ctx context.Context, after record.Version, limit int) ([]record.Change, error) {
	if err := w.alive("read log"); err != nil {
		return nil, err
	}
	return w.Store.ReadLog(ctx, after, limit)
}

// PutPending implements origin.Pending; without notes in the wrapped store
// it only runs the hook.
func (w *WriteFaults) PutPending(ctx context.Context, c record.Change) error {
	if err := w.before(ctx, StepNote, c); err != nil {
		return err
	}
	if w.pend == nil {
		return nil
	}
	return w.pend.PutPending(ctx, c)
}

// DeletePending implements origin.Pending.
func (w *WriteFaults) DeletePending(ctx context.Context, c record.Change) error {
	if err := w.before(ctx, StepClear, c); err != nil {
		return err
	}
	if w.pend == nil {
		return nil
	}
	return w.pend.DeletePending(ctx, c)
}

// ListPending implements origin.Pending.
func (w *WriteFaults) ListPending(ctx context.Context, limit int) ([]record.Change, error) {
	if err := w.alive("list pending"); err != nil {
		return nil, err
	}
	if w.pend == nil {
		return nil, nil
	}
	return w.pend.ListPending(ctx, limit)
}
