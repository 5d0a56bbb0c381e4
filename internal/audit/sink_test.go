package audit

import (
	"errors"
	"slices"
	"testing"
	"time"
)

// holder is a deduplicating writer in memory: the API server's store or a
// File, as Multi sees them.
type holder struct {
	ids  []string
	fail bool
}

func (h *holder) Write(records []Record) error { _, err := h.Append(records); return err }

func (h *holder) Append(records []Record) ([]Record, error) {
	if h.fail {
		return nil, errors.New("unavailable")
	}
	var fresh []Record
	for _, r := range records {
		if !slices.Contains(h.ids, r.ID) {
			h.ids = append(h.ids, r.ID)
			fresh = append(fresh, r)
		}
	}
	return fresh, nil
}

type lines struct{ ids []string }

func (l *lines) Write(records []Record) error {
	for _, r := range records {
		l.ids = append(l.ids, r.ID)
	}
	return nil
}

// TestMultiGivesEveryDurableWriterEveryRecord: a record the first store
// already held (a retried batch) still reaches the second, which lacked
// it; stdout prints what some store took fresh, once; a store that fails
// makes the write fail, and the others still get everything.
func TestMultiGivesEveryDurableWriterEveryRecord(t *testing.T) {
	at := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	rec := func(id string) Record { return Record{ID: id, Time: at, Action: ActionViewed} }
	store, file, out := &holder{ids: []string{"a"}}, &holder{}, &lines{}
	m := Multi{store, file, out}
	if err := m.Write([]Record{rec("a"), rec("b")}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(file.ids, []string{"a", "b"}) {
		t.Errorf("the second store holds %v, want a and b", file.ids)
	}
	if !slices.Equal(out.ids, []string{"a", "b"}) {
		t.Errorf("stdout printed %v, want a (fresh in the file) and b", out.ids)
	}
	if err := m.Write([]Record{rec("a"), rec("b")}); err != nil {
		t.Fatal(err)
	}
	if len(out.ids) != 2 {
		t.Errorf("a batch sent again was printed again: %v", out.ids)
	}
	store.fail = true
	if err := m.Write([]Record{rec("c")}); err == nil {
		t.Error("a failed store did not fail the write")
	}
	if !slices.Contains(file.ids, "c") || !slices.Contains(out.ids, "c") {
		t.Errorf("after a failed store, the file holds %v and stdout printed %v; want c in both", file.ids, out.ids)
	}
}
