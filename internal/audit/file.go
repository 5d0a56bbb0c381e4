package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"sync"

	"github.com/go-logr/logr"
)

// File is an append-only JSON-lines audit log. Write returns only after the
// records are on disk (fsync), so a caller that acknowledges after Write
// loses nothing in a crash. When the file passes MaxBytes it is rotated to
// PATH.1 (PATH.1 to PATH.2, ...), keeping MaxBackups old files.
type File struct {
	Path       string
	MaxBytes   int64
	MaxBackups int

	// Logger reports a torn tail repaired at open.
	Logger logr.Logger

	mu sync.Mutex
	f  logFile
	// size is the file's length after its last complete record.
	size int64
	// dirty says a failed write could not be rolled back; the next write
	// rolls it back first.
	dirty bool
	// wrap, in tests, stands in for the file's writes.
	wrap func(*os.File) logFile
	// remember is the number of record keys kept for deduplication.
	remember int
	// seen holds the keys of the latest records on file, so a batch the
	// API server sends again is not recorded twice.
	seen *recentSet
}

// logFile is what a File writes to: the log's *os.File, or in tests one
// that fails.
type logFile interface {
	io.Writer
	Sync() error
	Truncate(size int64) error
	Close() error
}

// FileOption configures OpenFile.
type FileOption func(*File)

// WithLogger has the File log what it repairs.
func WithLogger(log logr.Logger) FileOption { return func(l *File) { l.Logger = log } }

// MaxRemembered bounds the record keys a File remembers for deduplication:
// the API server resends a batch within a minute or so, and the
// controller's replays come within a reconcile, so the latest 100,000
// records (about 15 MiB) are plenty.
const MaxRemembered = 100_000

// recentSet is a set of strings that forgets the oldest beyond its size.
type recentSet struct {
	size    int
	members map[string]struct{}
	order   []string // a ring once full; next is its oldest
	next    int
}

func newRecentSet(size int) *recentSet {
	return &recentSet{size: size, members: map[string]struct{}{}}
}

func (s *recentSet) has(k string) bool {
	_, ok := s.members[k]
	return ok
}

func (s *recentSet) add(k string) {
	if s.has(k) {
		return
	}
	if len(s.order) < s.size {
		s.order = append(s.order, k)
	} else {
		delete(s.members, s.order[s.next])
		s.order[s.next] = k
		s.next = (s.next + 1) % s.size
	}
	s.members[k] = struct{}{}
}

// OpenFile opens (or creates) the log at path and loads the audit IDs
// already recorded in it and its backups.
func OpenFile(path string, maxBytes int64, maxBackups int, opts ...FileOption) (*File, error) {
	l := &File{Path: path, MaxBytes: maxBytes, MaxBackups: maxBackups, Logger: logr.Discard(), remember: MaxRemembered}
	for _, o := range opts {
		o(l)
	}
	l.seen = newRecentSet(l.remember)
	if err := l.repairTail(); err != nil {
		return nil, err
	}
	for _, p := range l.files() {
		if err := readRecords(p, func(r Record) {
			if k := r.dedupKey(); k != "" {
				l.seen.add(k)
			}
		}); err != nil {
			return nil, err
		}
	}
	if err := l.open(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *File) open() error {
	f, err := os.OpenFile(l.Path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return err
	}
	l.f, l.size = f, st.Size()
	if l.wrap != nil {
		l.f = l.wrap(f)
	}
	return nil
}

// repairTail cuts the log back to its last complete line. A crash in the
// middle of a write leaves a torn line, never acknowledged; appending to it
// would glue the next record onto it, and both would be lost.
func (l *File) repairTail() error {
	f, err := os.OpenFile(l.Path, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	end, err := lastLineEnd(f, st.Size())
	if err != nil || end == st.Size() {
		return err
	}
	if err := f.Truncate(end); err != nil {
		return fmt.Errorf("repairing the torn tail of %s: %w", l.Path, err)
	}
	if err := f.Sync(); err != nil {
		return err
	}
	l.Logger.Info("cut a torn last line from the audit log: a write that was never acknowledged", "path", l.Path, "bytes", st.Size()-end)
	return nil
}

// lastLineEnd is the offset just after the last newline of the first size
// bytes of f, 0 if there is none.
func lastLineEnd(f io.ReaderAt, size int64) (int64, error) {
	buf := make([]byte, 64<<10)
	for end := size; end > 0; {
		start := max(0, end-int64(len(buf)))
		chunk := buf[:end-start]
		if _, err := f.ReadAt(chunk, start); err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		if i := bytes.LastIndexByte(chunk, '\n'); i >= 0 {
			return start + int64(i) + 1, nil
		}
		end = start
	}
	return 0, nil
}

// rollback cuts the file back to its last acknowledged record, after a
// failed or short write.
func (l *File) rollback() error {
	if err := l.f.Truncate(l.size); err != nil {
		l.dirty = true
		return fmt.Errorf("rolling back a failed audit write: %w", err)
	}
	if err := l.f.Sync(); err != nil {
		l.dirty = true
		return fmt.Errorf("rolling back a failed audit write: %w", err)
	}
	l.dirty = false
	return nil
}

// Write appends the records not yet on file and syncs.
func (l *File) Write(records []Record) error {
	_, err := l.Append(records)
	return err
}

// Append appends the records not yet on file (by audit ID and APIKey UID),
// syncs, and returns the records it appended.
func (l *File) Append(records []Record) ([]Record, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var buf []byte
	var keys []string
	var fresh []Record
	for _, r := range records {
		if k := r.dedupKey(); k != "" {
			if l.seen.has(k) || slices.Contains(keys, k) {
				continue
			}
			keys = append(keys, k)
		}
		line, err := json.Marshal(r)
		if err != nil {
			return nil, err
		}
		buf = append(append(buf, line...), '\n')
		fresh = append(fresh, r)
	}
	if len(buf) == 0 {
		return nil, nil
	}
	if l.dirty {
		if err := l.rollback(); err != nil {
			return nil, err
		}
	}
	if l.MaxBytes > 0 && l.size > 0 && l.size+int64(len(buf)) > l.MaxBytes {
		if err := l.rotate(); err != nil {
			return nil, err
		}
	}
	// A write that fails half-way, or whose sync fails, leaves nothing:
	// the batch is answered 500 and sent again, and must find the file
	// as it was.
	_, err := l.f.Write(buf)
	if err == nil {
		err = l.f.Sync()
	}
	if err != nil {
		return nil, errors.Join(err, l.rollback())
	}
	l.size += int64(len(buf))
	for _, k := range keys {
		l.seen.add(k)
	}
	return fresh, nil
}

// rotate shifts PATH.i to PATH.i+1, dropping the oldest beyond MaxBackups.
func (l *File) rotate() error {
	if err := l.f.Close(); err != nil {
		return err
	}
	if err := os.Remove(fmt.Sprintf("%s.%d", l.Path, l.MaxBackups)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for i := l.MaxBackups - 1; i >= 1; i-- {
		if err := os.Rename(fmt.Sprintf("%s.%d", l.Path, i), fmt.Sprintf("%s.%d", l.Path, i+1)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if l.MaxBackups > 0 {
		if err := os.Rename(l.Path, l.Path+".1"); err != nil {
			return err
		}
	} else if err := os.Remove(l.Path); err != nil {
		return err
	}
	return l.open()
}

// Close closes the log.
func (l *File) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
}

// files are the log's files, oldest first.
func (l *File) files() []string {
	var out []string
	for i := l.MaxBackups; i >= 1; i-- {
		out = append(out, fmt.Sprintf("%s.%d", l.Path, i))
	}
	return append(out, l.Path)
}

// Each calls fn for every record on file that passes f, oldest first. It
// reads what was on file when it began and holds up no writer while it
// reads (an export of a large log must not stall the acknowledgements the
// API server waits for): the files are opened under the lock, which a
// rotation's renames do not disturb, and read after.
func (l *File) Each(f Filter, fn func(Record) error) error {
	files, err := l.snapshot()
	if err != nil {
		return err
	}
	defer func() {
		for _, s := range files {
			_ = s.file.Close()
		}
	}()
	var ferr error
	unreadable := 0
	for _, s := range files {
		bad, err := scanRecords(io.LimitReader(s.file, s.size), func(r Record) {
			if ferr == nil && f.Match(r) {
				ferr = fn(r)
			}
		})
		if err != nil {
			return err
		}
		unreadable += bad
	}
	if ferr == nil && unreadable > 0 {
		return &UnreadableError{Lines: unreadable}
	}
	return ferr
}

// UnreadableError says that lines of the log were not records: Each went
// on past them, and the caller must say so rather than pass over them.
type UnreadableError struct{ Lines int }

func (e *UnreadableError) Error() string {
	return fmt.Sprintf("%d lines of the audit log are not records; the log was changed by hand or is damaged", e.Lines)
}

// openedFile is a log file open for reading, up to the size it had.
type openedFile struct {
	file *os.File
	size int64
}

// snapshot opens the log's files, oldest first, as they are now.
func (l *File) snapshot() ([]openedFile, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []openedFile
	for _, p := range l.files() {
		f, err := os.Open(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		var st os.FileInfo
		if err == nil {
			st, err = f.Stat()
		}
		if err != nil {
			if f != nil {
				_ = f.Close()
			}
			for _, o := range out {
				_ = o.file.Close()
			}
			return nil, err
		}
		out = append(out, openedFile{file: f, size: st.Size()})
	}
	return out, nil
}

// readRecords reads the JSON lines of path; a missing file has none.
func readRecords(path string, fn func(Record)) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }() // read only
	_, err = scanRecords(f, fn)
	return err
}

// scanRecords reads JSON lines and counts the complete lines that are not
// records; a torn last line (a crash mid-write, never acknowledged, cut at
// the next open) is skipped.
func scanRecords(in io.Reader, fn func(Record)) (unreadable int, err error) {
	r := bufio.NewReader(in)
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 && line[len(line)-1] == '\n' {
			var rec Record
			if jerr := json.Unmarshal(line, &rec); jerr == nil {
				fn(rec)
			} else {
				unreadable++
			}
		}
		if errors.Is(err, io.EOF) {
			return unreadable, nil
		}
		if err != nil {
			return unreadable, err
		}
	}
}
