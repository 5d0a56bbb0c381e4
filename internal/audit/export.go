package audit

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

// Format is an export format.
type Format string

// Export formats.
const (
	FormatJSON Format = "json"
	FormatCSV  Format = "csv"
)

var csvHeader = []string{"time", "action", "actor", "actorGroups", "namespace", "name", "uid", "user", "keyID", "sourceIPs", "userAgent", "auditID", "message", "impersonator", "scope", "repeats"}

// Export writes the records of log that pass f to w, as JSON lines or CSV.
func Export(log *File, f Filter, format Format, w io.Writer) error {
	switch format {
	case FormatJSON, "":
		enc := json.NewEncoder(w)
		return log.Each(f, func(r Record) error { return enc.Encode(r) })
	case FormatCSV:
		cw := csv.NewWriter(w)
		if err := cw.Write(csvHeader); err != nil {
			return err
		}
		if err := log.Each(f, func(r Record) error {
			row := []string{
				r.Time.UTC().Format(time.RFC3339Nano), string(r.Action), r.Actor.Username, strings.Join(r.Actor.Groups, ";"),
				r.Namespace, r.Name, r.UID, r.User, r.KeyID, strings.Join(r.SourceIPs, ";"), r.UserAgent, r.AuditID, r.Message,
				impersonatorCell(r.Impersonator), scopeCell(r.Scope), repeatsCell(r.Repeats),
			}
			for i := range row {
				row[i] = noFormula(row[i])
			}
			return cw.Write(row)
		}); err != nil {
			return err
		}
		cw.Flush()
		return cw.Error()
	}
	return fmt.Errorf("unknown format %q: use json or csv", format)
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
