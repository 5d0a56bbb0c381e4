package audit

import (
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
	if err := Print(records, format, w); err != nil {
		return err
	}
	return readErr
}

// Print writes records to w as JSON lines or CSV, in the order given.
func Print(records []Record, format Format, w io.Writer) error {
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
		if err := writeCSVRow(w, csvHeader); err != nil {
			return err
		}
		for _, r := range records {
			row := []string{
				r.Time.UTC().Format(time.RFC3339Nano), string(r.Action), r.Actor.Username, strings.Join(r.Actor.Groups, ";"),
				r.Namespace, r.Name, r.UID, r.User, r.KeyID, strings.Join(r.SourceIPs, ";"), r.UserAgent, r.AuditID, r.Message,
				impersonatorCell(r.Impersonator), scopeCell(r.Scope), repeatsCell(r.Repeats),
			}
			if err := writeCSVRow(w, row); err != nil {
				return err
			}
		}
		return nil
	}
}

// writeCSVRow writes one RFC 4180 row with every cell quoted and made
// formula-free, so that the row splits only where this writer split it and
// no cell becomes a formula, whatever delimiter a spreadsheet splits on.
func writeCSVRow(w io.Writer, cells []string) error {
	var b strings.Builder
	for i, c := range cells {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('"')
		b.WriteString(strings.ReplaceAll(noFormula(c), `"`, `""`))
		b.WriteByte('"')
	}
	b.WriteString("\r\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// formulaStart are the characters with which a spreadsheet starts a
// formula (CSV injection); OWASP adds tab and carriage return.
const formulaStart = "=+-@\t\r"

// cellBreaks are where a spreadsheet may start a new cell in a line that
// was not split as written: the delimiters in use in any locale (comma,
// semicolon, tab, pipe), a quote, and line breaks.
const cellBreaks = ",;\t|\"\r\n"

// noFormula keeps every part of a cell from reading as a formula: user
// agents, user names and messages come from requests. A formula character
// at the start, or after anything a spreadsheet could split the cell at,
// gets a leading quote, as OWASP recommends for a cell's start.
func noFormula(cell string) string {
	var b strings.Builder
	atStart := true
	for _, r := range cell {
		if atStart && strings.ContainsRune(formulaStart, r) {
			b.WriteByte('\'')
		}
		b.WriteRune(r)
		atStart = strings.ContainsRune(cellBreaks, r) || (atStart && r == ' ')
	}
	return b.String()
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
