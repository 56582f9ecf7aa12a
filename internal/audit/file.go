package audit

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// fileHandle is what the file sink needs of an *os.File; tests swap in
// one that fails.
type fileHandle interface {
	io.Writer
	Sync() error
	Close() error
}

func openAppend(name string) (fileHandle, error) {
	return os.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
}

// rotFile is the audit file with size-based rotation. Rotation is written
// here rather than taken from a logging library because it must cooperate
// with the chain: the writer needs the newest backup to continue the chain
// at start, backups must sort in chain order for `audit verify
// audit*.log`, a size must be honoured to the byte (tests rotate at 4KiB)
// and nothing may run in the background.
//
// Backups are named <stem>-<index>-<UTC time><ext> with an increasing
// 8-digit index, e.g. audit-00000042-20260102T150405Z.log, so that they
// sort oldest first and before the current file.
type rotFile struct {
	path       string
	maxSize    int64
	maxBackups int
	open       func(string) (fileHandle, error)
	now        func() time.Time

	f     fileHandle // nil after a failed open: the next write retries
	size  int64
	next  int // index of the next backup
	dirty bool
	// retryRotate holds rotation back after a failed attempt, so that a
	// full disk does not mean a rename attempt per line.
	retryRotate time.Time
	lock        io.Closer
}

func openRotFile(path string, maxSize int64, maxBackups int, open func(string) (fileHandle, error), now func() time.Time) (*rotFile, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	if err := checkRegular(path); err != nil {
		return nil, err
	}
	lock, err := lockFile(path + ".lock")
	if err != nil {
		return nil, err
	}
	r := &rotFile{path: path, maxSize: maxSize, maxBackups: maxBackups, open: open, now: now, lock: lock}
	backups, err := r.backups()
	if err != nil {
		_ = lock.Close()
		return nil, err
	}
	r.next = 1
	if len(backups) > 0 {
		r.next = backups[len(backups)-1].index + 1
	}
	if err := r.reopen(); err != nil {
		_ = lock.Close()
		return nil, err
	}
	return r, nil
}

// checkRegular refuses an audit path that exists and is not a regular
// file. Rotation renames the file: pointed at /dev/null it would move the
// device away (and the system's next writer would create a plain file in
// its place); a FIFO or a symlink is not a record gatehouse can rotate or
// continue either.
func checkRegular(path string) error {
	st, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("audit: %w", unwrapPath(err))
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("audit: %s is not a regular file (%s); audit.file must be a file gatehouse owns, rotates and continues — to send lines elsewhere use audit.stdout", path, st.Mode().Type())
	}
	return nil
}

func (r *rotFile) reopen() error {
	f, err := r.open(r.path)
	if err != nil {
		return fmt.Errorf("audit: open %s: %w", r.path, unwrapPath(err))
	}
	st, err := os.Stat(r.path)
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("audit: %w", err)
	}
	r.f, r.size = f, st.Size()
	return nil
}

// Write appends p; it reopens the file first when an earlier open failed.
func (r *rotFile) Write(p []byte) (int, error) {
	if r.f == nil {
		if err := r.reopen(); err != nil {
			return 0, err
		}
	}
	n, err := r.f.Write(p)
	r.size += int64(n)
	if n > 0 {
		r.dirty = true
	}
	return n, err
}

// wantRotate reports whether a line of n bytes, after pending bytes not
// yet written, should go to a new file.
func (r *rotFile) wantRotate(pending, n int) bool {
	size := r.size + int64(pending)
	return size > 0 && size+int64(n) > r.maxSize &&
		(r.retryRotate.IsZero() || !r.now().Before(r.retryRotate))
}

// rotate moves the current file to the next backup name and starts an
// empty one. rotated reports whether the rename happened (the next line
// goes to a new file) even when err reports a problem around it; when it
// did not, the current file stays in use.
func (r *rotFile) rotate() (rotated bool, err error) {
	if r.f == nil {
		return false, errors.New("audit: rotate: no open file")
	}
	syncErr := r.f.Sync()
	r.dirty = false
	// Never rename what is not our file: the path may have been replaced
	// by a device or a link since it was opened.
	if err := checkRegular(r.path); err != nil {
		r.retryRotate = r.now().Add(time.Minute)
		return false, errors.Join(syncErr, err)
	}
	name := r.backupName(r.next, r.now())
	if err := os.Rename(r.path, name); err != nil {
		r.retryRotate = r.now().Add(time.Minute)
		return false, fmt.Errorf("audit: rotate: %w", unwrapPath(err))
	}
	r.next++
	old := r.f
	r.f, r.size = nil, 0
	cerr := old.Close()
	err = r.reopen()
	syncDir(filepath.Dir(r.path))
	if err == nil {
		r.prune()
	}
	return true, errors.Join(syncErr, cerr, err)
}

// prune deletes the oldest backups beyond maxBackups.
func (r *rotFile) prune() {
	if r.maxBackups <= 0 {
		return
	}
	backups, err := r.backups()
	if err != nil {
		return
	}
	for len(backups) > r.maxBackups {
		_ = os.Remove(backups[0].path)
		backups = backups[1:]
	}
}

func (r *rotFile) sync() error {
	if r.f == nil || !r.dirty {
		return nil
	}
	r.dirty = false
	return r.f.Sync()
}

func (r *rotFile) close() error {
	var err error
	if r.f != nil {
		err = errors.Join(r.f.Sync(), r.f.Close())
		r.f = nil
	}
	return errors.Join(err, r.lock.Close())
}

func (r *rotFile) backupName(index int, t time.Time) string {
	dir, stem, ext := splitName(r.path)
	return filepath.Join(dir, fmt.Sprintf("%s-%08d-%s%s", stem, index, t.UTC().Format("20060102T150405Z"), ext))
}

type backup struct {
	path  string
	index int
}

// backups lists the rotated files of path, oldest first.
func (r *rotFile) backups() ([]backup, error) { return listBackups(r.path) }

func listBackups(path string) ([]backup, error) {
	dir, stem, ext := splitName(path)
	re := regexp.MustCompile(`^` + regexp.QuoteMeta(stem) + `-(\d{8,})-\d{8}T\d{6}Z` + regexp.QuoteMeta(ext) + `$`)
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("audit: %w", err)
	}
	var out []backup
	for _, e := range entries {
		m := re.FindStringSubmatch(e.Name())
		if m == nil || !e.Type().IsRegular() {
			continue
		}
		i, err := strconv.Atoi(m[1])
		if err != nil {
			continue
		}
		out = append(out, backup{path: filepath.Join(dir, e.Name()), index: i})
	}
	slices.SortFunc(out, func(a, b backup) int { return a.index - b.index })
	return out, nil
}

// splitName splits /var/log/audit.log into /var/log, audit and .log.
func splitName(path string) (dir, stem, ext string) {
	dir, base := filepath.Split(path)
	ext = filepath.Ext(base)
	if ext == base {
		ext = ""
	}
	return filepath.Clean(dir), strings.TrimSuffix(base, ext), ext
}

// syncDir makes a rename durable; errors are ignored because not every
// file system can sync a directory.
func syncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	_ = d.Sync()
	_ = d.Close()
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Path, pe.Err)
	}
	return err
}
