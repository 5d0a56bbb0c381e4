package audit

import (
	"encoding/json"
	"io"
	"sync"
)

// Writer takes records; it returns once they are written.
type Writer interface {
	Write(records []Record) error
}

// Lines writes each record as one JSON line {"audit": record}, which sets
// audit lines apart from the manager's ordinary logs on the same stream.
type Lines struct {
	mu sync.Mutex
	W  io.Writer
}

func (l *Lines) Write(records []Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	enc := json.NewEncoder(l.W)
	for _, r := range records {
		if err := enc.Encode(struct {
			Audit Record `json:"audit"`
		}{r}); err != nil {
			return err
		}
	}
	return nil
}

// appender is a writer that drops records it already holds and returns
// the ones it wrote.
type appender interface {
	Append(records []Record) ([]Record, error)
}

// Multi writes to every writer in order, so the durable ones go first. After
// a deduplicating writer (a File), the writers that follow get only the
// records it took: a batch sent again is not printed twice either.
type Multi []Writer

func (m Multi) Write(records []Record) error {
	for _, w := range m {
		if len(records) == 0 {
			return nil
		}
		if a, ok := w.(appender); ok {
			fresh, err := a.Append(records)
			if err != nil {
				return err
			}
			records = fresh
			continue
		}
		if err := w.Write(records); err != nil {
			return err
		}
	}
	return nil
}
