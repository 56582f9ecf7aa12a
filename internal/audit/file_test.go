package audit

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/config"
)

func verifyFiles(t *testing.T, paths []string, keys ...[]byte) *Report {
	t.Helper()
	rep, err := Verify(Files(paths...), keys)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return rep
}

func lastLine(t *testing.T, path string) *Line {
	t.Helper()
	lines := parseAll(t, readFile(t, path))
	return lines[len(lines)-1]
}

func startLines(t *testing.T, paths []string) []*Line {
	t.Helper()
	var out []*Line
	for _, p := range paths {
		for _, raw := range splitLines(readFile(t, p)) {
			if l, err := ParseLine(raw); err == nil && l.Kind == KindStart {
				out = append(out, l)
			}
		}
	}
	return out
}

func run(t *testing.T, cfg config.Audit, from, n int) {
	t.Helper()
	l := start(t, cfg, nil, options{})
	for i := from; i < from+n; i++ {
		l.Record(event(i))
	}
	l.close(t)
}

// TestRestartContinues: each start continues the chain of the file it
// finds, so three runs make one chain.
func TestRestartContinues(t *testing.T) {
	for _, key := range []string{"", string(testKey)} {
		cfg, path := fileConfig(t)
		var keys [][]byte
		if key != "" {
			cfg = keyed(t, cfg, key)
			keys = [][]byte{testKey}
		}
		for r := range 3 {
			run(t, cfg, r*10, 10)
		}
		rep := verifyFiles(t, []string{path}, keys...)
		mustOK(t, rep)
		if rep.Lines != 36 || rep.ChainCount != 1 || !rep.Stopped {
			t.Errorf("key %q: %d lines, %d chains, stopped %v; want 36 lines in 1 chain, stopped", key, rep.Lines, rep.ChainCount, rep.Stopped)
		}
		starts := startLines(t, []string{path})
		if len(starts) != 3 || starts[1].Seq != 13 || !strings.Contains(starts[1].Detail, "continues "+path+" at seq 12") {
			t.Errorf("second start line: seq %d %q; want seq 13 continuing at seq 12", starts[1].Seq, starts[1].Detail)
		}
	}
}

// TestRestartAfterCrash: a torn last line (the process died mid-write) is
// ended with a newline and declared by the start line; verify accepts it
// as a recorded loss.
func TestRestartAfterCrash(t *testing.T) {
	cfg, path := fileConfig(t)
	run(t, cfg, 0, 5)
	// A crash: lines without audit.stop, and half a line.
	b := readFile(t, path)
	lines := splitLines(b)
	writeFile(t, path, string(b[:len(b)-len(lines[len(lines)-1])-1])+string(lines[1][:40]))
	run(t, cfg, 5, 5)

	rep := verifyFiles(t, []string{path})
	mustOK(t, rep)
	if rep.TornCount != 1 || rep.TornBytes != 41 || rep.ChainCount != 1 {
		t.Errorf("torn %d (%d bytes), chains %d; want 1 torn write of 41 bytes in 1 chain", rep.TornCount, rep.TornBytes, rep.ChainCount)
	}
	st := startLines(t, []string{path})[1]
	if st.Torn != 41 || !strings.Contains(st.Detail, "did not close the log") {
		t.Errorf("start line torn %d detail %q; want 41 and the crash noted", st.Torn, st.Detail)
	}
}

// TestRestartAfterTamperedTail: a last line that does not verify cannot be
// continued: a new chain starts, naming the hash it found, and verify
// still reports the edited line.
func TestRestartAfterTamperedTail(t *testing.T) {
	cfg, path := fileConfig(t)
	run(t, cfg, 0, 3)
	b := readFile(t, path)
	writeFile(t, path, strings.Replace(string(b), `"kind":"audit.stop"`, `"kind":"audit.stoP"`, 1))
	run(t, cfg, 3, 3)
	st := startLines(t, []string{path})[1]
	if !st.Genesis() || st.After == "" || !strings.Contains(st.Detail, "does not verify") {
		t.Errorf("start line after an edited tail: seq %d after %q detail %q; want a new chain naming the last hash", st.Seq, st.After, st.Detail)
	}
	rep := verifyFiles(t, []string{path})
	if rep.Problem == nil || rep.Problem.Line != 5 || !strings.Contains(rep.Problem.Msg, "hash mismatch") {
		t.Errorf("Verify = %v; want a hash mismatch at line 5", rep.Problem)
	}
}

// TestKeyRotation: a new chain key starts a new chain that refers to the
// old one; verify with both keys accepts the whole file.
func TestKeyRotation(t *testing.T) {
	cfg, path := fileConfig(t)
	newKey := []byte("a brand new key of 32 bytes or more")
	run(t, keyed(t, cfg, string(testKey)), 0, 3)
	run(t, keyed(t, cfg, string(newKey)), 3, 3)
	rep := verifyFiles(t, []string{path}, testKey, newKey)
	mustOK(t, rep)
	if rep.ChainCount != 2 || rep.Lines != 10 {
		t.Errorf("%d chains, %d lines; want 2 chains, 10 lines", rep.ChainCount, rep.Lines)
	}
	if rep := verifyFiles(t, []string{path}, newKey); rep.Problem == nil || rep.Problem.Line != 1 {
		t.Errorf("Verify with the new key only = %v; want a problem at line 1", rep.Problem)
	}
}

func TestRestartFromGarbage(t *testing.T) {
	cfg, path := fileConfig(t)
	writeFile(t, path, "this is not an audit log\n")
	run(t, cfg, 0, 1)
	st := startLines(t, []string{path})
	if len(st) != 1 || !strings.Contains(st[0].Detail, "not an audit line") {
		t.Fatalf("start line %+v; want a new chain explaining the last line is not an audit line", st)
	}
	if rep := verifyFiles(t, []string{path}); rep.Problem == nil || rep.Problem.Line != 1 {
		t.Errorf("Verify = %v; want the garbage line reported", rep.Problem)
	}
}

func TestRotationContinuesChain(t *testing.T) {
	cfg, path := fileConfig(t)
	cfg.MaxSize = 4096
	cfg.MaxBackups = 0
	l := start(t, cfg, nil, options{})
	for i := range 200 {
		l.Record(event(i))
	}
	l.close(t)
	// And a restart after rotation continues from the current file.
	run(t, cfg, 200, 50)

	set := fileSet(t, path)
	if len(set) < 10 {
		t.Fatalf("%d files; want many rotations at 4KiB", len(set))
	}
	name := regexp.MustCompile(`^audit-\d{8}-\d{8}T\d{6}Z\.log$`)
	for _, p := range set[:len(set)-1] {
		if !name.MatchString(filepath.Base(p)) {
			t.Errorf("backup %s is not named audit-<index>-<time>.log", p)
		}
		if st, _ := os.Stat(p); st.Size() > 4096 {
			t.Errorf("%s holds %d bytes; want at most 4096", p, st.Size())
		}
	}
	// Shell glob order is chain order.
	glob, _ := filepath.Glob(filepath.Join(filepath.Dir(path), "audit*.log"))
	rep := verifyFiles(t, glob)
	mustOK(t, rep)
	if rep.Lines != 254 || rep.ChainCount != 1 || rep.Files != len(set) {
		t.Errorf("%d lines, %d chains in %d files; want 254 lines in 1 chain in %d files", rep.Lines, rep.ChainCount, rep.Files, len(set))
	}
	if got := l.counter(t, "rotations"); got == 0 {
		t.Errorf("rotations_total = 0; want the rotations counted")
	}
}

// TestRotationPrunes keeps MaxBackups files; the oldest kept file starts
// mid-chain, which verify accepts and says.
func TestRotationPrunes(t *testing.T) {
	cfg, path := fileConfig(t)
	cfg.MaxSize = 4096
	cfg.MaxBackups = 3
	run(t, cfg, 0, 200)
	set := fileSet(t, path)
	if len(set) != 4 {
		t.Fatalf("%d files; want 3 backups and the current file", len(set))
	}
	rep := verifyFiles(t, set)
	mustOK(t, rep)
	if rep.ChainCount != 1 || rep.Chains[0].Seq == 1 || !strings.Contains(rep.Chains[0].Detail, "files not given") {
		t.Errorf("chains %+v; want one chain continuing from files not given", rep.Chains)
	}
	// Files out of order are reported, with a hint.
	rep = verifyFiles(t, []string{set[1], set[0], set[2], set[3]})
	if rep.Problem == nil || !strings.Contains(rep.Problem.Msg, "in order") {
		t.Errorf("Verify(out of order) = %v; want a hint about file order", rep.Problem)
	}
}

// TestRestartFromBackup: when the current file is empty (rotated just
// before a stop), the chain continues from the newest backup.
func TestRestartFromBackup(t *testing.T) {
	cfg, path := fileConfig(t)
	cfg.MaxSize = 4096
	run(t, cfg, 0, 100)
	bs := fileSet(t, path)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	run(t, cfg, 100, 3)
	st := startLines(t, []string{path})
	if len(st) != 1 || st[0].Genesis() || !strings.Contains(st[0].Detail, bs[len(bs)-2]) {
		t.Fatalf("start line %+v; want a continuation of %s", st, bs[len(bs)-2])
	}
	mustOK(t, verifyFiles(t, fileSet(t, path)))
}

func TestFileLocked(t *testing.T) {
	cfg, _ := fileConfig(t)
	l := start(t, cfg, nil, options{})
	defer l.close(t)
	if _, err := newLogger(cfg, nil, nil, nil, options{}); err == nil || !strings.Contains(err.Error(), "locked") {
		t.Fatalf("second New on one file = %v; want a lock error", err)
	}
}

// failingFile fails writes on demand, writing part of the bytes first, as
// a full disk does.
type failingFile struct {
	fileHandle
	mu      sync.Mutex
	failIn  int // fail the failIn-th write from now (1 = next)
	partial int // bytes written by the failing write
}

func (f *failingFile) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failIn > 0 {
		f.failIn--
		if f.failIn == 0 {
			n, _ := f.fileHandle.Write(p[:min(f.partial, len(p))])
			return n, errors.New("no space left on device")
		}
	}
	return f.fileHandle.Write(p)
}

func TestFileWriteErrorRecorded(t *testing.T) {
	cfg, path := fileConfig(t)
	var ff *failingFile
	open := func(name string) (fileHandle, error) {
		h, err := openAppend(name)
		ff = &failingFile{fileHandle: h}
		return ff, err
	}
	l := start(t, cfg, nil, options{openFile: open})
	gateOne := func(i int) {
		l.Record(event(i))
		for len(l.ch) > 0 {
			runtime.Gosched() // let the writer take it: small batches, several writes
		}
	}
	ff.mu.Lock()
	ff.failIn, ff.partial = 2, 30
	ff.mu.Unlock()
	for i := range 6 {
		gateOne(i)
	}
	l.close(t)

	rep := verifyFiles(t, []string{path})
	mustOK(t, rep)
	if rep.Lost == 0 || rep.TornBytes == 0 {
		t.Errorf("lost %d, torn %d bytes; want the failed write recorded as a gap and torn bytes", rep.Lost, rep.TornBytes)
	}
	if got := l.counter(t, "errors", "file", "write"); got != 1 {
		t.Errorf("write_errors_total = %v; want 1", got)
	}
	if got := l.counter(t, "lost", "file"); uint64(got) != rep.Lost {
		t.Errorf("lost_lines_total = %v; the log records %d", got, rep.Lost)
	}
	if written := rep.Lines - 2; written+int64(rep.Lost) != 6 {
		t.Errorf("written %d + lost %d; want 6 events", written, rep.Lost)
	}
}

// TestRestartAfterMissingNewline: a crash between a line and its newline
// leaves a whole line; the next start completes it and continues.
func TestRestartAfterMissingNewline(t *testing.T) {
	cfg, path := fileConfig(t)
	run(t, cfg, 0, 3)
	b := readFile(t, path)
	writeFile(t, path, string(b[:len(b)-1]))
	run(t, cfg, 3, 3)
	rep := verifyFiles(t, []string{path})
	mustOK(t, rep)
	if rep.Lines != 10 || rep.ChainCount != 1 || rep.TornBytes != 0 {
		t.Errorf("%d lines, %d chains, %d torn bytes; want 10 lines in 1 chain, nothing torn", rep.Lines, rep.ChainCount, rep.TornBytes)
	}
}

// TestRotationFailure: a rename that fails leaves the current file in use
// (nothing is lost), is counted, and is retried a minute later.
func TestRotationFailure(t *testing.T) {
	cfg, path := fileConfig(t)
	cfg.MaxSize = 4096
	var now atomic.Int64
	now.Store(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()).UTC() }
	// The first backup's name is taken by a directory: rename fails.
	blocker := filepath.Join(filepath.Dir(path), "audit-00000001-20260301T120000Z.log")
	if err := os.MkdirAll(filepath.Join(blocker, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	l := start(t, cfg, nil, options{now: clock})
	for i := range 40 {
		l.Record(event(i))
	}
	for l.counter(t, "lines", "file") < 41 {
		runtime.Gosched() // until the writer wrote them
	}
	now.Add(int64(2 * time.Minute))
	for i := 40; i < 80; i++ {
		l.Record(event(i))
	}
	l.close(t)
	if got := l.counter(t, "errors", "file", "rotate"); got != 1 {
		t.Errorf("rotate errors = %v; want 1 (then no retry for a minute)", got)
	}
	if got := l.counter(t, "rotations"); got == 0 {
		t.Errorf("no rotation after the retry delay")
	}
	set := fileSet(t, path)
	rep := verifyFiles(t, set)
	mustOK(t, rep)
	if rep.Lines != 82 {
		t.Errorf("%d lines in %v; want all 82", rep.Lines, set)
	}
}

func TestSyncAlwaysFsyncs(t *testing.T) {
	cfg, _ := fileConfig(t)
	cfg.Sync = config.AuditSyncAlways
	l := start(t, cfg, nil, options{})
	l.Record(event(1))
	l.close(t)
	mfs, err := l.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "gatehouse_audit_fsync_seconds" {
			if n := mf.GetMetric()[0].GetHistogram().GetSampleCount(); n < 2 {
				t.Errorf("fsyncs observed = %d; want one at start and one per write", n)
			}
			return
		}
	}
	t.Error("gatehouse_audit_fsync_seconds not found")
}

func TestRefusesNonRegularFile(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real.log")
	if err := os.WriteFile(real, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.log")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{os.DevNull, link, dir} {
		_, err := openRotFile(path, 4096, 1, openAppend, time.Now)
		if err == nil || !strings.Contains(err.Error(), "is not a regular file") {
			t.Errorf("openRotFile(%s) = %v; want refused as not a regular file", path, err)
		}
	}
	if st, err := os.Stat(os.DevNull); err != nil || st.Mode().IsRegular() {
		t.Fatalf("%s was disturbed: %v %v", os.DevNull, st, err)
	}
	if _, err := os.Stat(os.DevNull + ".lock"); err == nil {
		t.Errorf("a lock file was created next to %s", os.DevNull)
	}
}
