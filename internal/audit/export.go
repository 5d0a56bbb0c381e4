package audit

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// The export's HTTP contract, shared by the server and the plugin, which
// links this package and not the server's.
const (
	// ExportPath serves the audit trail to authorised administrators.
	ExportPath = "/audit/export"
	// ExportErrorTrailer is the HTTP trailer in which an export that could
	// not read every line of the log says so.
	ExportErrorTrailer = "X-Keymint-Export-Error"
)

// Format is an export format.
type Format string

// Export formats.
const (
	FormatJSON Format = "json"
	FormatCSV  Format = "csv"
)

var csvHeader = []string{"time", "action", "actor", "actorGroups", "namespace", "name", "uid", "user", "keyID", "sourceIPs", "userAgent", "auditID", "message", "impersonator", "scope", "repeats"}

// Export writes the records of log that pass f to w, oldest first, as JSON
// lines or CSV. The log holds them in the order they were written, which is
// not quite the order they happened: the API server's batches arrive after
// the controller's records of the same moment.
func Export(log *File, f Filter, format Format, w io.Writer) error {
	if format != FormatJSON && format != FormatCSV && format != "" {
		return fmt.Errorf("unknown format %q: use json or csv", format)
	}
	var records []Record
	readErr := log.Each(f, func(r Record) error { records = append(records, r); return nil })
	if readErr != nil && !errors.As(readErr, new(*UnreadableError)) {
		return readErr
	}
	slices.SortStableFunc(records, func(a, b Record) int { return a.Time.Compare(b.Time) })
	if err := write(records, format, w); err != nil {
		return err
	}
	return readErr
}

func write(records []Record, format Format, w io.Writer) error {
	switch format {
	case FormatJSON, "":
		enc := json.NewEncoder(w)
		for _, r := range records {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		return nil
	default:
		cw := csv.NewWriter(w)
		if err := cw.Write(csvHeader); err != nil {
			return err
		}
		for _, r := range records {
			row := []string{
				r.Time.UTC().Format(time.RFC3339Nano), string(r.Action), r.Actor.Username, strings.Join(r.Actor.Groups, ";"),
				r.Namespace, r.Name, r.UID, r.User, r.KeyID, strings.Join(r.SourceIPs, ";"), r.UserAgent, r.AuditID, r.Message,
				impersonatorCell(r.Impersonator), scopeCell(r.Scope), repeatsCell(r.Repeats),
			}
			for i := range row {
				row[i] = noFormula(row[i])
			}
			if err := cw.Write(row); err != nil {
				return err
			}
		}
		cw.Flush()
		return cw.Error()
	}
}

// noFormula keeps a spreadsheet from running a cell as a formula (CSV
// injection): user agents, user names and messages come from requests,
// so a cell that starts like a formula gets a leading quote, as OWASP
// recommends.
func noFormula(cell string) string {
	if cell != "" && strings.ContainsRune("=+-@\t\r", rune(cell[0])) {
		return "'" + cell
	}
	return cell
}

func impersonatorCell(a *Actor) string {
	if a == nil {
		return ""
	}
	return a.Username
}

func scopeCell(s *Scope) string {
	if s == nil {
		return ""
	}
	ns := s.Namespace
	if ns == "" {
		ns = "(all namespaces)"
	}
	return fmt.Sprintf("%s labelSelector=%q fieldSelector=%q keys=%d", ns, s.LabelSelector, s.FieldSelector, s.Keys)
}

func repeatsCell(r *Repeats) string {
	if r == nil {
		return ""
	}
	return fmt.Sprintf("%d from %s to %s", r.Count, r.First.UTC().Format(time.RFC3339), r.Last.UTC().Format(time.RFC3339))
}
