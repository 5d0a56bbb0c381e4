package audit

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/utils/clock"
)

// Refused reads are the one thing anybody can make the API server audit at
// will, and reads of one's own key the one thing every key holder can. So
// that nobody can flush the trail with either, repeats are aggregated over
// a window: an actor's refusals, and an actor's views (or a kubelet's
// mounts) of one key. The first is written at once; the rest are counted
// and written as one record when the window closes.
const (
	// RepeatWindow is how long the repeats after an actor's first are
	// counted before they are written as one record.
	RepeatWindow = 5 * time.Minute
	// MaxRepeatWindows bounds the windows open at once; past it, a record
	// is written on its own.
	MaxRepeatWindows = 10_000
)

// repeatWindow counts one actor's repeats after its first.
type repeatWindow struct {
	// opened is when the first was received, by the server's clock, which
	// also closes the window.
	opened time.Time
	// first is the record written when the window opened; the summary
	// repeats its actor and key.
	first Record
	// count repeats came after the first, from since to last.
	count       int
	since, last time.Time
}

// Aggregator aggregates refused reads per actor, and views and mounts per
// actor and key. A batch is planned, written, and only then committed, so
// a batch that failed to write and comes again is not counted twice.
type Aggregator struct {
	window  time.Duration
	mu      sync.Mutex
	windows map[string]*repeatWindow
}

func NewAggregator(window time.Duration) *Aggregator {
	if window <= 0 {
		window = RepeatWindow
	}
	return &Aggregator{window: window, windows: map[string]*repeatWindow{}}
}

func actorKey(r Record) string {
	k := r.Actor.Username
	if r.Impersonator != nil {
		k += "\x00" + r.Impersonator.Username
	}
	return k
}

// repeatKey names the window a record counts in; "" for a record that is
// always written on its own.
func repeatKey(r Record) string {
	switch r.Action {
	case ActionViewDenied:
		return string(r.Action) + "\x00" + actorKey(r)
	case ActionViewed, ActionMounted:
		return string(r.Action) + "\x00" + actorKey(r) + "\x00" + r.UID + "\x00" + r.KeyID
	}
	return ""
}

// plan returns the records of a batch to write, at now: every record but
// the repeats of windows that are open, plus the summaries of the windows
// that closed. commit, called once the records are written, makes the plan
// the state.
func (d *Aggregator) Plan(records []Record, now time.Time) (out []Record, commit func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	changed := map[string]*repeatWindow{} // nil: closed
	window := func(k string) *repeatWindow {
		if w, ok := changed[k]; ok {
			return w
		}
		return d.windows[k]
	}
	out = d.closedSummaries(now, changed)
	open := len(d.windows)
	for _, r := range records {
		k := repeatKey(r)
		if k == "" {
			out = append(out, r)
			continue
		}
		w := window(k)
		switch {
		case w != nil && now.Before(w.opened.Add(d.window)):
			c := *w
			if c.count == 0 {
				c.since = r.Time
			}
			c.count++
			c.last = r.Time
			changed[k] = &c
		case open < MaxRepeatWindows:
			if w == nil {
				open++
			}
			if w != nil && w.count > 0 {
				out = append(out, summary(w))
			}
			changed[k] = &repeatWindow{opened: now, first: r}
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
// and returns the summaries of those that counted repeats.
func (d *Aggregator) closedSummaries(now time.Time, changed map[string]*repeatWindow) []Record {
	var out []Record
	for k, w := range d.windows {
		if now.Before(w.opened.Add(d.window)) {
			continue
		}
		changed[k] = nil
		if w.count > 0 {
			out = append(out, summary(w))
		}
	}
	return out
}

// summary is the record of the repeats a window counted. Its ID is the
// same on every try, so a summary written twice is recorded once.
func summary(w *repeatWindow) Record {
	f := w.first
	s := Record{
		ID:           fmt.Sprintf("keymint/repeats/%s/%d", f.ID, w.count),
		Time:         w.last,
		Action:       f.Action,
		Actor:        f.Actor,
		Impersonator: f.Impersonator,
		Repeats:      &Repeats{Count: w.count, First: w.since, Last: w.last},
	}
	between := w.since.UTC().Format(time.RFC3339) + " and " + w.last.UTC().Format(time.RFC3339)
	if f.Action == ActionViewDenied {
		s.Message = fmt.Sprintf("%s was refused %d more reads of Secrets holding keys between %s, after the refusal of request %s",
			f.Actor.Username, w.count, between, f.AuditID)
		return s
	}
	s.Namespace, s.Name, s.UID, s.User, s.KeyID = f.Namespace, f.Name, f.UID, f.User, f.KeyID
	s.Message = fmt.Sprintf("%s read the key's Secret %d more times between %s, after request %s", f.Actor.Username, w.count, between, f.AuditID)
	return s
}

// Window is how long an actor's repeats are counted into one record.
func (d *Aggregator) Window() time.Duration { return d.window }

// Write writes records to w at now, with the repeats aggregated, and
// returns what it wrote: the plan becomes the state only once w has it.
func (d *Aggregator) Write(w Writer, records []Record, now time.Time) ([]Record, error) {
	records, commit := d.Plan(records, now)
	if len(records) > 0 {
		if err := w.Write(records); err != nil {
			return records, err
		}
	}
	commit()
	return records, nil
}

// Flush writes to w the summaries of the windows that closed, every tenth
// of a window, until ctx ends.
func (d *Aggregator) Flush(ctx context.Context, clk clock.WithTicker, w Writer, log logr.Logger) {
	ticker := clk.NewTicker(max(d.window/10, time.Second))
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C():
			if _, err := d.Write(w, nil, clk.Now()); err != nil {
				log.Error(err, "writing the summaries of repeated reads failed; retrying")
			}
		}
	}
}
