package testenv

import (
	"errors"
	"strings"
	"sync"

	"github.com/keymint/keymint/internal/audit"
)

// Buffer collects what several goroutines write, such as a manager's logs,
// for a test to read.
type Buffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Trail is an audit.Writer that keeps the records in memory. Refusals, when
// set, is how many writes it refuses first, as a full disk does.
type Trail struct {
	mu       sync.Mutex
	Refusals int
	records  []audit.Record
}

func (t *Trail) Write(records []audit.Record) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.Refusals > 0 {
		t.Refusals--
		return errors.New("no space left on device")
	}
	t.records = append(t.records, records...)
	return nil
}

// Refused reports whether writes are still to be refused.
func (t *Trail) Refused() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.Refusals
}

// Of returns the records of action about the APIKey name.
func (t *Trail) Of(action audit.Action, name string) []audit.Record {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []audit.Record
	for _, r := range t.records {
		if r.Action == action && r.Name == name {
			out = append(out, r)
		}
	}
	return out
}
