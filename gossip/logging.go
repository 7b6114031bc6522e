package gossip

import (
	"bytes"
	"context"
	"log"
	"log/slog"
	"sync/atomic"
	"time"
)

// memberlistLogger returns a *log.Logger for memberlist that forwards each
// line to l at the level memberlist tagged it with ("[DEBUG]", "[INFO]",
// "[WARN]", "[ERR]"/"[ERROR]"), so that the handler's level filters
// memberlist's chatter like any other log line.
func memberlistLogger(l *slog.Logger) *log.Logger {
	return log.New(slogWriter{l.With("component", "memberlist")}, "", 0)
}

type slogWriter struct{ l *slog.Logger }

var levelTags = []struct {
	tag   []byte
	level slog.Level
}{
	{[]byte("[DEBUG]"), slog.LevelDebug},
	{[]byte("[INFO]"), slog.LevelInfo},
	{[]byte("[WARN]"), slog.LevelWarn},
	{[]byte("[ERR]"), slog.LevelError},
	{[]byte("[ERROR]"), slog.LevelError},
}

func (w slogWriter) Write(p []byte) (int, error) {
	n := len(p)
	line := bytes.TrimSpace(p)
	level := slog.LevelInfo
	for _, t := range levelTags {
		if bytes.HasPrefix(line, t.tag) {
			level, line = t.level, bytes.TrimSpace(line[len(t.tag):])
			break
		}
	}
	ctx := context.Background()
	if w.l.Enabled(ctx, level) {
		line = bytes.TrimPrefix(line, []byte("memberlist: "))
		w.l.Log(ctx, level, string(line))
	}
	return n, nil
}

// rateLimit lets one event through per interval, so that a flood of garbage
// yields a log line and a metric per message but not a log line per message.
type rateLimit struct {
	every time.Duration
	last  atomic.Int64 // unix nanos of the last allowed event
}

func (r *rateLimit) allow(now time.Time) bool {
	last := r.last.Load()
	if now.UnixNano()-last < int64(r.every) {
		return false
	}
	return r.last.CompareAndSwap(last, now.UnixNano())
}
