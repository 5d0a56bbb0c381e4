package audit

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// failingFile writes budget bytes, then fails, as a full disk or a dying
// device does half-way through a write.
type failingFile struct {
	*os.File
	budget        int
	truncateFails int
}

func (f *failingFile) Write(p []byte) (int, error) {
	if len(p) <= f.budget {
		f.budget -= len(p)
		return f.File.Write(p)
	}
	n, _ := f.File.Write(p[:f.budget])
	f.budget = 0
	return n, errors.New("no space left on device")
}

func (f *failingFile) Truncate(size int64) error {
	if f.truncateFails > 0 {
		f.truncateFails--
		return errors.New("input/output error")
	}
	return f.File.Truncate(size)
}

func records(n int, prefix string) []Record {
	var out []Record
	for i := range n {
		out = append(out, rec(i, ActionViewed, "alice", fmt.Sprintf("%s-%d", prefix, i)))
	}
	return out
}

// expectIntact fails unless every line of the log is a record and the log
// holds want records.
func expectIntact(t *testing.T, l *File, want int) {
	t.Helper()
	var got int
	err := l.Each(Filter{}, func(Record) error { got++; return nil })
	if err != nil {
		t.Fatalf("reading the log: %v", err)
	}
	if got != want {
		t.Fatalf("%d records on file, want %d", got, want)
	}
}

func TestATornTailIsRepairedBeforeTheNextWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := OpenFile(path, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Write(records(1, "a")); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// A kill -9 in the middle of a write leaves half a line.
	appendRaw(t, path, `{"time":"2026-11-26T12:00:00Z","action":"Vie`)
	if l, err = OpenFile(path, 0, 0); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	if err := l.Write(records(2, "b")); err != nil {
		t.Fatal(err)
	}
	expectIntact(t, l, 3)
}

func TestAFailedWriteLeavesNoFragment(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	var disk *failingFile
	l, err := OpenFile(path, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	if err := l.Write(records(1, "first")); err != nil {
		t.Fatal(err)
	}
	// The next batch fails after 30 bytes: the batch is refused (500) and
	// the file is as it was.
	disk = &failingFile{File: l.f.(*os.File), budget: 30}
	l.f = disk
	batch := records(5, "batch")
	if err := l.Write(batch); err == nil {
		t.Fatal("a failed write was acknowledged")
	}
	expectIntact(t, l, 1)

	// It fails again, and so does the rollback: the next write rolls back
	// first.
	disk.budget, disk.truncateFails = 30, 1
	if err := l.Write(batch); err == nil {
		t.Fatal("a failed write was acknowledged")
	}
	disk.budget = 1 << 20
	if err := l.Write(batch); err != nil {
		t.Fatalf("the batch sent again once there is room: %v", err)
	}
	expectIntact(t, l, 6)
}

// TestAFullFilesystemLosesNothing fills a real 64 KiB tmpfs (as root; the
// failing writer above covers the logic elsewhere).
func TestAFullFilesystemLosesNothing(t *testing.T) {
	dir := t.TempDir()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v %s", err, out)
	}
	defer func() { _ = exec.Command("umount", dir).Run() }()
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, 40<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := OpenFile(filepath.Join(dir, "audit.log"), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	acknowledged, refused := 0, 0
	var failed []Record
	for i := 0; refused == 0 && i < 1000; i++ {
		batch := records(10, fmt.Sprint("b", i))
		if err := l.Write(batch); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("want ENOSPC, got %v", err)
			}
			refused++
			failed = batch
			continue
		}
		acknowledged += len(batch)
	}
	if refused == 0 {
		t.Fatal("the filesystem never filled")
	}
	expectIntact(t, l, acknowledged)
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := l.Write(failed); err != nil {
		t.Fatalf("the refused batch once there is room: %v", err)
	}
	expectIntact(t, l, acknowledged+len(failed))
}

func TestDedupWindowEdge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	const window = 10
	open := func() *File {
		l, err := OpenFile(path, 0, 0, func(l *File) { l.remember = window })
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	l := open()
	batch := records(window, "w")
	if err := l.Write(batch); err != nil {
		t.Fatal(err)
	}
	// Inside the window, across a restart: nothing is added.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = open()
	defer func() { _ = l.Close() }()
	if err := l.Write(batch[:1]); err != nil {
		t.Fatal(err)
	}
	expectIntact(t, l, window)
	// One newer record pushes the oldest out of the window: sent again,
	// it is recorded a second time, as docs/audit.md says.
	if err := l.Write(records(1, "newer")); err != nil {
		t.Fatal(err)
	}
	if err := l.Write(batch[:2]); err != nil {
		t.Fatal(err)
	}
	expectIntact(t, l, window+2)
}

func TestMultiStillWritesStdoutWhenTheFileFails(t *testing.T) {
	l, err := OpenFile(filepath.Join(t.TempDir(), "audit.log"), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	l.f = &failingFile{File: l.f.(*os.File)}
	var out strings.Builder
	r := rec(0, ActionIssued, "alice", "keymint/uid-alice/Issued/kid_alice")
	if err := (Multi{l, &Lines{W: &out}}).Write([]Record{r}); err == nil {
		t.Fatal("a failed file write was not reported")
	}
	if !strings.Contains(out.String(), `"id":"keymint/uid-alice/Issued/kid_alice`) {
		t.Fatalf("stdout lacks the record, with its ID: %q", out.String())
	}
}

func TestExportReportsLinesItCannotParse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := OpenFile(path, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Write(records(2, "x")); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	appendRaw(t, path, "not a record\n")
	if l, err = OpenFile(path, 0, 0); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	var got int
	err = l.Each(Filter{}, func(Record) error { got++; return nil })
	var unreadable *UnreadableError
	if !errors.As(err, &unreadable) || unreadable.Lines != 1 || got != 2 {
		t.Fatalf("got %d records and %v, want 2 and one unreadable line", got, err)
	}
}
