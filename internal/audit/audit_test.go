package audit

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func rec(i int, action Action, user, auditID string) Record {
	return Record{
		Time: t0.Add(time.Duration(i) * time.Minute), Action: action,
		Actor:     Actor{Username: "viewer", Groups: []string{"g1", "g2"}},
		Namespace: "team-a", Name: "key-" + user, UID: "uid-" + user, User: user, KeyID: "kid_" + user,
		SourceIPs: []string{"10.0.0.1"}, UserAgent: "kubectl", AuditID: auditID, Message: fmt.Sprintf("record %d", i),
	}
}

func all(t *testing.T, l *File, f Filter) []Record {
	t.Helper()
	var out []Record
	if err := l.Each(f, func(r Record) error { out = append(out, r); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDuplicatesAreDroppedByAuditIDAcrossRestarts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := OpenFile(path, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	batch := []Record{rec(0, ActionViewed, "alice", "a1"), rec(1, ActionViewed, "alice", "a2"), rec(1, ActionViewed, "alice", "a2")}
	if err := l.Write(batch); err != nil {
		t.Fatal(err)
	}
	if err := l.Write(batch); err != nil { // the API server sends the batch again
		t.Fatal(err)
	}
	if got := len(all(t, l, Filter{})); got != 2 {
		t.Fatalf("%d records, want 2", got)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	// A restart remembers what is on record.
	l, err = OpenFile(path, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	if err := l.Write(append(batch, rec(2, ActionDeleted, "alice", ""), rec(2, ActionDeleted, "alice", ""))); err != nil {
		t.Fatal(err)
	}
	// Records without an audit ID (the controller's) are never deduplicated.
	if got := len(all(t, l, Filter{})); got != 4 {
		t.Fatalf("%d records after a restart, want 4", got)
	}
}

func TestATornLastLineIsSkipped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := OpenFile(path, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Write([]Record{rec(0, ActionIssued, "alice", "")}); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// A crash mid-write leaves half a line, never acknowledged.
	appendRaw(t, path, `{"time":"2026-11-26T12:00:00Z","action":"Vie`)
	l, err = OpenFile(path, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	if got := len(all(t, l, Filter{})); got != 1 {
		t.Fatalf("%d records, want 1", got)
	}
}

func TestRotationKeepsTheNewestWithinRetention(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := OpenFile(path, 1000, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	for i := range 40 {
		if err := l.Write([]Record{rec(i, ActionViewed, "alice", fmt.Sprintf("id-%d", i))}); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{path, path + ".1", path + ".2"} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if st.Size() > 1000 {
			t.Errorf("%s is %d bytes, over the bound", p, st.Size())
		}
	}
	if _, err := os.Stat(path + ".3"); !os.IsNotExist(err) {
		t.Errorf("a third backup exists: %v", err)
	}
	got := all(t, l, Filter{})
	if len(got) == 0 || got[len(got)-1].AuditID != "id-39" {
		t.Fatalf("the newest record is missing")
	}
	for i := 1; i < len(got); i++ {
		if got[i].Time.Before(got[i-1].Time) {
			t.Fatal("records are not oldest first across files")
		}
	}
}

func TestFilters(t *testing.T) {
	l, err := OpenFile(filepath.Join(t.TempDir(), "audit.log"), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	if err := l.Write([]Record{
		rec(0, ActionIssued, "alice", ""), rec(1, ActionViewed, "alice", "v1"),
		rec(2, ActionViewed, "bob", "v2"), rec(3, ActionDeleted, "alice", ""),
	}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		f    Filter
		want int
	}{
		{"all", Filter{}, 4},
		{"user", Filter{User: "alice"}, 3},
		{"action", Filter{Action: ActionViewed}, 2},
		{"key", Filter{Namespace: "team-a", Name: "key-bob"}, 1},
		{"time range: from inclusive, to exclusive", Filter{From: t0.Add(time.Minute), To: t0.Add(3 * time.Minute)}, 2},
	} {
		if got := len(all(t, l, tt.f)); got != tt.want {
			t.Errorf("%s: %d records, want %d", tt.name, got, tt.want)
		}
	}
}

func TestExportFormats(t *testing.T) {
	l, err := OpenFile(filepath.Join(t.TempDir(), "audit.log"), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	bob := rec(1, ActionIssued, "bob", "")
	bob.Impersonator = &Actor{Username: "admin"}
	bob.Scope = &Scope{LabelSelector: "tier=prod", Keys: 1000}
	bob.Repeats = &Repeats{Count: 3, First: bob.Time, Last: bob.Time.Add(3 * time.Minute)}
	if err := l.Write([]Record{rec(0, ActionViewed, "alice", "v1"), bob}); err != nil {
		t.Fatal(err)
	}
	var js bytes.Buffer
	if err := Export(l, Filter{User: "alice"}, FormatJSON, &js); err != nil {
		t.Fatal(err)
	}
	wantJSON := `{"time":"2026-11-26T12:00:00Z","action":"Viewed","actor":{"username":"viewer","groups":["g1","g2"]},"namespace":"team-a","name":"key-alice","uid":"uid-alice","user":"alice","keyID":"kid_alice","sourceIPs":["10.0.0.1"],"userAgent":"kubectl","auditID":"v1","message":"record 0"}` + "\n"
	if js.String() != wantJSON {
		t.Errorf("JSON export:\n%s\nwant\n%s", js.String(), wantJSON)
	}
	var csvOut bytes.Buffer
	if err := Export(l, Filter{}, FormatCSV, &csvOut); err != nil {
		t.Fatal(err)
	}
	wantCSV := strings.Join([]string{
		`"time","action","actor","actorGroups","namespace","name","uid","user","keyID","sourceIPs","userAgent","auditID","message","impersonator","scope","repeats"`,
		`"2026-11-26T12:00:00Z","Viewed","viewer","g1;g2","team-a","key-alice","uid-alice","alice","kid_alice","10.0.0.1","kubectl","v1","record 0","","",""`,
		`"2026-11-26T12:01:00Z","Issued","viewer","g1;g2","team-a","key-bob","uid-bob","bob","kid_bob","10.0.0.1","kubectl","","record 1","admin","(all namespaces) labelSelector=""tier=prod"" fieldSelector="""" keys=1000","3 from 2026-11-26T12:01:00Z to 2026-11-26T12:04:00Z"`,
	}, "\r\n") + "\r\n"
	if csvOut.String() != wantCSV {
		t.Errorf("CSV export:\n%s\nwant\n%s", csvOut.String(), wantCSV)
	}
	if err := Export(l, Filter{}, "xml", &csvOut); err == nil {
		t.Error("an unknown format was accepted")
	}
}

func TestRecentSetForgetsTheOldest(t *testing.T) {
	s := newRecentSet(3)
	for _, k := range []string{"a", "b", "c", "a", "d", "e"} {
		s.add(k)
	}
	for k, want := range map[string]bool{"a": false, "b": false, "c": true, "d": true, "e": true} {
		if s.has(k) != want {
			t.Errorf("has(%q) = %v, want %v", k, !want, want)
		}
	}
	if len(s.members) != 3 {
		t.Errorf("%d members, want 3", len(s.members))
	}
}

// TestAnExportHoldsUpNoWriter: records written (and rotated) while an export
// reads are acknowledged at once; the export shows what was on file when it
// began, in order, and nothing torn.
func TestAnExportHoldsUpNoWriter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := OpenFile(path, 1000, 5)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	for i := range 8 {
		if err := l.Write([]Record{rec(i, ActionViewed, "alice", fmt.Sprintf("before-%d", i))}); err != nil {
			t.Fatal(err)
		}
	}
	var seen []string
	done := make(chan error, 1)
	go func() {
		done <- l.Each(Filter{}, func(r Record) error {
			seen = append(seen, r.AuditID)
			if len(seen) == 1 {
				// Enough to rotate the file the export is reading.
				for i := range 8 {
					if err := l.Write([]Record{rec(100+i, ActionViewed, "bob", fmt.Sprintf("during-%d", i))}); err != nil {
						return err
					}
				}
			}
			return nil
		})
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a write waited for the export")
	}
	want := []string{"before-0", "before-1", "before-2", "before-3", "before-4", "before-5", "before-6", "before-7"}
	if strings.Join(seen, ",") != strings.Join(want, ",") {
		t.Fatalf("the export read %v, want %v", seen, want)
	}
	if got := all(t, l, Filter{User: "bob"}); len(got) != 8 {
		t.Fatalf("%d records written during the export, want 8", len(got))
	}
}

// TestCSVCellsAreNoFormulas: whatever a request wrote into a record, no
// spreadsheet reads a formula from the export, whichever delimiter its
// locale splits on (comma, semicolon, tab, pipe), and a proper CSV reader
// gets every cell back whole.
func TestCSVCellsAreNoFormulas(t *testing.T) {
	l, err := OpenFile(filepath.Join(t.TempDir(), "audit.log"), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	r := rec(0, ActionViewDenied, "=HYPERLINK(\"http://evil\")", "v1")
	r.UserAgent = "kubectl/v1.30;=1+1;=cmd|' /C calc'!A0;"
	r.Actor = Actor{Username: "@SUM(1+1)", Groups: []string{"+1", "g;=2+2", "h,-3", "i\t@x"}}
	r.Message = "-2+3|=4 \"=5"
	r.Namespace = "\tteam-a"
	r.Name = "\rkey"
	r.KeyID = "kid=safe"
	r.SourceIPs = []string{"10.0.0.1", "=1"}
	if err := l.Write([]Record{r}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := Export(l, Filter{}, FormatCSV, &out); err != nil {
		t.Fatal(err)
	}
	for _, delimiter := range []rune{',', ';', '\t', '|'} {
		cr := csv.NewReader(strings.NewReader(out.String()))
		cr.Comma, cr.LazyQuotes, cr.FieldsPerRecord = delimiter, true, -1
		rows, err := cr.ReadAll()
		if err != nil {
			t.Fatalf("delimiter %q: %v", delimiter, err)
		}
		for _, row := range rows {
			for _, cell := range row {
				if c := strings.TrimLeft(cell, " \""); c != "" && strings.ContainsRune("=+-@", rune(c[0])) {
					t.Errorf("delimiter %q: the cell %q reads as a formula", delimiter, cell)
				}
			}
		}
	}
	rows, err := csv.NewReader(strings.NewReader(out.String())).ReadAll()
	if err != nil || len(rows) != 2 || len(rows[1]) != len(csvHeader) {
		t.Fatalf("a CSV reader read %d rows (%v), want the header and one row of %d cells", len(rows), err, len(csvHeader))
	}
	if got, want := rows[1][10], "kubectl/v1.30;'=1+1;'=cmd|' /C calc'!A0;"; got != want {
		t.Errorf("user agent cell = %q, want %q", got, want)
	}
	if got, want := rows[1][2], "'@SUM(1+1)"; got != want {
		t.Errorf("actor cell = %q, want %q", got, want)
	}
}

func TestTruncateCutsAtACharacter(t *testing.T) {
	long := strings.Repeat("é", MaxTextBytes) // two bytes each
	got := Truncate(long)
	if len(got) != MaxTextBytes || !utf8.ValidString(got) {
		t.Fatalf("Truncate gave %d bytes, valid UTF-8: %v", len(got), utf8.ValidString(got))
	}
	if Truncate("kubectl") != "kubectl" {
		t.Fatal("a short string was changed")
	}
}

func TestExportIsInTimeOrder(t *testing.T) {
	l, err := OpenFile(filepath.Join(t.TempDir(), "audit.log"), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	// The API server's batch of an earlier read arrives after the
	// controller's record of a later issue.
	if err := l.Write([]Record{rec(5, ActionIssued, "alice", "i"), rec(1, ActionViewed, "alice", "v"), rec(3, ActionViewed, "bob", "w")}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := Export(l, Filter{}, FormatJSON, &out); err != nil {
		t.Fatal(err)
	}
	var order []string
	for line := range strings.SplitSeq(strings.TrimSpace(out.String()), "\n") {
		order = append(order, line[strings.Index(line, `"message":"`):])
	}
	want := []string{`"message":"record 1"}`, `"message":"record 3"}`, `"message":"record 5"}`}
	if strings.Join(order, " ") != strings.Join(want, " ") {
		t.Fatalf("export order %v, want %v", order, want)
	}
}

// appendRaw appends text to the file at path as a crash or an intruder
// would, past the writer.
func appendRaw(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString(text)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
}
