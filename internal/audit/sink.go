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

// Multi writes to every writer, the durable ones first as given.
type Multi []Writer

func (m Multi) Write(records []Record) error {
	for _, w := range m {
		if err := w.Write(records); err != nil {
			return err
		}
	}
	return nil
}
