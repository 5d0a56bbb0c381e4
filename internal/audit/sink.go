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

// Multi writes to every writer in order, so the durable ones go first.
// Each deduplicating writer (the API server's store, a File) gets every
// record and keeps each once; the writers that follow them get only the
// records one of them took fresh: a batch sent again is not printed twice
// either. When a writer fails, the others still get the records, and the
// error is returned, so the caller retries: a record may then appear twice
// on stdout, with the same ID, but never nowhere.
type Multi []Writer

func (m Multi) Write(records []Record) error {
	records = WithIDs(records)
	var errs []error
	var fresh map[int]bool // by index into records; nil: no appender yet
	for _, w := range m {
		if a, ok := w.(appender); ok {
			took, err := a.Append(records)
			if fresh == nil {
				fresh = map[int]bool{}
			}
			if err != nil {
				// What it took is unknown: the others get everything.
				took = records
				errs = append(errs, err)
			}
			markTaken(records, took, fresh)
			continue
		}
		out := records
		if fresh != nil {
			out = out[:0:0]
			for i, r := range records {
				if fresh[i] {
					out = append(out, r)
				}
			}
		}
		if len(out) == 0 {
			continue
		}
		if err := w.Write(out); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// markTaken marks in fresh the indexes of records that took holds, in
// order: an appender returns a subsequence of what it was given.
func markTaken(records, took []Record, fresh map[int]bool) {
	j := 0
	for i := range records {
		if j < len(took) && records[i].ID == took[j].ID && records[i].Time.Equal(took[j].Time) && records[i].Action == took[j].Action {
			fresh[i] = true
			j++
		}
	}
}
