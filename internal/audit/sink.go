package audit

import (
	"encoding/json"
	"errors"
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
// records it took: a batch sent again is not printed twice either. When a
// writer fails, the others still get every record, and the error is
// returned, so the caller retries: a record may then appear twice on
// stdout, with the same ID, but never nowhere.
type Multi []Writer

func (m Multi) Write(records []Record) error {
	records = WithIDs(records)
	var errs []error
	for _, w := range m {
		if len(records) == 0 {
			break
		}
		if a, ok := w.(appender); ok {
			fresh, err := a.Append(records)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			records = fresh
			continue
		}
		if err := w.Write(records); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
