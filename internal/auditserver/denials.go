package auditserver

import (
	"fmt"
	"sync"
	"time"

	"github.com/keymint/keymint/internal/audit"
)

// Refused reads are the one thing anybody can make the API server audit
// at will. So that nobody can flush the trail with them, each actor's
// refusals are aggregated over a window: the first is written at once,
// the rest are counted and written as one record when the window closes.
const (
	// DenialWindow is how long the refusals after an actor's first are
	// counted before they are written as one record.
	DenialWindow = 5 * time.Minute
	// MaxDenialActors bounds the actors whose windows are open; past it, a
	// refusal is written on its own.
	MaxDenialActors = 10_000
)

// denialWindow counts one actor's refusals after its first.
type denialWindow struct {
	// opened is when the first refusal was received, by the server's clock,
	// which also closes the window.
	opened time.Time
	// first is the record written when the window opened; the summary
	// repeats its actor.
	first audit.Record
	// count refusals came after the first, from since to last.
	count       int
	since, last time.Time
}

// denials aggregates refused reads per actor (and impersonator). A batch
// is planned, written, and only then committed, so a batch that failed to
// write and comes again is not counted twice.
type denials struct {
	mu      sync.Mutex
	windows map[string]*denialWindow
}

func newDenials() *denials { return &denials{windows: map[string]*denialWindow{}} }

func actorKey(r audit.Record) string {
	k := r.Actor.Username
	if r.Impersonator != nil {
		k += "\x00" + r.Impersonator.Username
	}
	return k
}

// plan returns the records of a batch to write, at now: every record but
// the refusals of actors whose window is open, plus the summaries of the
// windows that closed. commit, called once the records are written,
// makes the plan the state.
func (d *denials) plan(records []audit.Record, now time.Time) (out []audit.Record, commit func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	changed := map[string]*denialWindow{} // nil: closed
	window := func(k string) *denialWindow {
		if w, ok := changed[k]; ok {
			return w
		}
		return d.windows[k]
	}
	out = d.closedSummaries(now, changed)
	open := len(d.windows)
	for _, r := range records {
		if r.Action != audit.ActionViewDenied {
			out = append(out, r)
			continue
		}
		k := actorKey(r)
		w := window(k)
		switch {
		case w != nil && now.Before(w.opened.Add(DenialWindow)):
			c := *w
			if c.count == 0 {
				c.since = r.Time
			}
			c.count++
			c.last = r.Time
			changed[k] = &c
		case open < MaxDenialActors:
			if w == nil {
				open++
			}
			if w != nil && w.count > 0 {
				out = append(out, summary(w))
			}
			changed[k] = &denialWindow{opened: now, first: r}
			out = append(out, r)
		default:
			out = append(out, r)
		}
	}
	return out, func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		for k, w := range changed {
			if w == nil {
				delete(d.windows, k)
			} else {
				d.windows[k] = w
			}
		}
	}
}

// closedSummaries marks closed in changed every window that closed by now,
// and returns the summaries of those that counted refusals.
func (d *denials) closedSummaries(now time.Time, changed map[string]*denialWindow) []audit.Record {
	var out []audit.Record
	for k, w := range d.windows {
		if now.Before(w.opened.Add(DenialWindow)) {
			continue
		}
		changed[k] = nil
		if w.count > 0 {
			out = append(out, summary(w))
		}
	}
	return out
}

// summary is the record of the refusals a window counted. Its ID is the
// same on every try, so a summary written twice is recorded once.
func summary(w *denialWindow) audit.Record {
	f := w.first
	return audit.Record{
		Time:         w.last,
		Action:       audit.ActionViewDenied,
		Actor:        f.Actor,
		Impersonator: f.Impersonator,
		AuditID:      fmt.Sprintf("keymint/denied/%s/%d", f.AuditID, w.count),
		Repeats:      &audit.Repeats{Count: w.count, First: w.since, Last: w.last},
		Message: fmt.Sprintf("%s was refused %d more reads of Secrets holding keys between %s and %s, after the refusal of request %s",
			f.Actor.Username, w.count, w.since.UTC().Format(time.RFC3339), w.last.UTC().Format(time.RFC3339), f.AuditID),
	}
}
