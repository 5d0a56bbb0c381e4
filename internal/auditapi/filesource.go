package auditapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"time"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/keymint/keymint/internal/audit"
)

// FileSource reads the records of the audit log, oldest first. A continue
// token names the last record of its page; if a rotation of the log has
// dropped that record, the next page starts after its time.
type FileSource struct{ Log *audit.File }

type fileToken struct {
	Name string    `json:"n"`
	Time time.Time `json:"t"`
}

// List implements Source.
func (f FileSource) List(_ context.Context, ns string, sel labels.Selector, limit int, cont string) ([]audit.Record, string, error) {
	var after fileToken
	if cont != "" {
		raw, err := base64.RawURLEncoding.DecodeString(cont)
		if err != nil || json.Unmarshal(raw, &after) != nil {
			return nil, "", &badContinue{errors.New("the continue token is not one this server gave")}
		}
	}
	records, next, found, err := f.page(ns, sel, limit, after, false)
	if err == nil && after.Name != "" && !found {
		records, next, _, err = f.page(ns, sel, limit, after, true)
	}
	return records, next, readError(err)
}

func (f FileSource) page(ns string, sel labels.Selector, limit int, after fileToken, byTime bool) (out []audit.Record, next string, found bool, err error) {
	skipping := after.Name != ""
	err = f.Log.Each(audit.Filter{Namespace: ns}, func(rec audit.Record) error {
		if skipping {
			switch {
			case byTime && rec.Time.After(after.Time):
				skipping = false
			case !byTime && audit.Name(rec) == after.Name:
				skipping, found = false, true
				return nil
			default:
				return nil
			}
		}
		if !sel.Matches(labels.Set(audit.Labels(rec))) {
			return nil
		}
		if len(out) == limit {
			last := out[len(out)-1]
			raw, _ := json.Marshal(fileToken{Name: audit.Name(last), Time: last.Time})
			next = base64.RawURLEncoding.EncodeToString(raw)
			return errStop
		}
		out = append(out, rec)
		return nil
	})
	return out, next, found, err
}

// Get implements Source.
func (f FileSource) Get(_ context.Context, ns, name string) (*audit.Record, error) {
	var found *audit.Record
	err := f.Log.Each(audit.Filter{Namespace: ns}, func(rec audit.Record) error {
		if audit.Name(rec) == name {
			found = &rec
			return errStop
		}
		return nil
	})
	return found, readError(err)
}

// errStop ends a read of the trail early.
var errStop = errors.New("stop")

// readError is a failed read of the log; a read
// stopped on purpose, or past lines that are not records, is not one (the
// export reports those; the API serves what it can read).
func readError(err error) error {
	var unreadable *audit.UnreadableError
	switch {
	case err == nil, errors.Is(err, errStop), errors.As(err, &unreadable):
		return nil
	}
	return err
}
