package audit

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"sync"
)

// File is an append-only JSON-lines audit log. Write returns only after the
// records are on disk (fsync), so a caller that acknowledges after Write
// loses nothing in a crash. When the file passes MaxBytes it is rotated to
// PATH.1 (PATH.1 to PATH.2, ...), keeping MaxBackups old files.
type File struct {
	Path       string
	MaxBytes   int64
	MaxBackups int

	mu   sync.Mutex
	f    *os.File
	size int64
	// seen holds the keys of the latest records on file, so a batch the
	// API server sends again is not recorded twice.
	seen *recentSet
}

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
func OpenFile(path string, maxBytes int64, maxBackups int) (*File, error) {
	l := &File{Path: path, MaxBytes: maxBytes, MaxBackups: maxBackups, seen: newRecentSet(MaxRemembered)}
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
		f.Close()
		return err
	}
	l.f, l.size = f, st.Size()
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
	if l.MaxBytes > 0 && l.size > 0 && l.size+int64(len(buf)) > l.MaxBytes {
		if err := l.rotate(); err != nil {
			return nil, err
		}
	}
	if _, err := l.f.Write(buf); err != nil {
		return nil, err
	}
	if err := l.f.Sync(); err != nil {
		return nil, err
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
	for _, s := range files {
		err := scanRecords(io.LimitReader(s.file, s.size), func(r Record) {
			if ferr == nil && f.Match(r) {
				ferr = fn(r)
			}
		})
		if err != nil {
			return err
		}
	}
	return ferr
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
	defer f.Close()
	return scanRecords(f, fn)
}

// scanRecords reads JSON lines; a torn last line (a crash mid-write, never
// acknowledged) is skipped.
func scanRecords(in io.Reader, fn func(Record)) error {
	r := bufio.NewReader(in)
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 && line[len(line)-1] == '\n' {
			var rec Record
			if jerr := json.Unmarshal(line, &rec); jerr == nil {
				fn(rec)
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
