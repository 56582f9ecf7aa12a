package audit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// fileTail is what the end of one file holds: its last complete line and
// the bytes after it (a torn write).
type fileTail struct {
	exists bool
	// line is the last complete line without its newline; nil when there
	// is none or it is longer than maxLine (tooLong).
	line    []byte
	tooLong bool
	// frag counts the bytes after the last newline; fragBytes holds them
	// when they are few enough to be a line.
	frag      int64
	fragBytes []byte
}

// readFileTail reads the end of path without reading the whole file.
func readFileTail(path string) (fileTail, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fileTail{}, nil
	}
	if err != nil {
		return fileTail{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fileTail{}, err
	}
	t := fileTail{exists: true}
	size := st.Size()
	last, err := lastNewline(f, size)
	if err != nil {
		return t, err
	}
	t.frag = size - (last + 1)
	if t.frag > 0 && t.frag <= maxLine {
		t.fragBytes = make([]byte, t.frag)
		if _, err := f.ReadAt(t.fragBytes, last+1); err != nil {
			return t, err
		}
	}
	if last < 0 {
		return t, nil
	}
	prev, err := lastNewline(f, last)
	if err != nil {
		return t, err
	}
	n := last - (prev + 1)
	if n > maxLine {
		t.tooLong = true
		return t, nil
	}
	t.line = make([]byte, n)
	if _, err := f.ReadAt(t.line, prev+1); err != nil {
		return t, err
	}
	return t, nil
}

// lastNewline returns the offset of the last '\n' before end, or -1.
func lastNewline(f io.ReaderAt, end int64) (int64, error) {
	buf := make([]byte, 64<<10)
	for end > 0 {
		n := min(int64(len(buf)), end)
		start := end - n
		if _, err := f.ReadAt(buf[:n], start); err != nil {
			return 0, err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			return start + int64(i), nil
		}
		end = start
	}
	return -1, nil
}

// resume is where a sink's chain goes on at start.
type resume struct {
	// head is the line the chain continues from; nil starts a new chain.
	head *link
	// torn counts bytes after the last complete line (torn writes) in the
	// newest backup and the current file; midLine says the current file
	// does not end with a newline, so the start line must begin with one.
	torn    int64
	midLine bool
	// owedNL says the current file ends with a whole line that lacks its
	// newline: the start line begins with one.
	owedNL bool
	// after is the hash written in a last line that could not be
	// continued (new chain).
	after string
	// detail explains, for the audit.start line.
	detail string
}

// readResume finds the last line of the audit file (or, when the file is
// empty or missing, of its newest backup) and decides whether the chain
// can continue from it: it can when the line parses and its hash verifies
// under h. Otherwise the chain starts anew, referring to what it found.
func readResume(path string, h *Hasher) resume {
	var r resume
	cur, err := readFileTail(path)
	if err != nil {
		return resume{detail: fmt.Sprintf("new chain: cannot read %s: %v", path, unwrapPath(err))}
	}
	if cur.frag > 0 {
		if l, err := ParseLine(cur.fragBytes); err == nil && h.Check(cur.fragBytes) {
			// A whole line but for its newline (a crash between the two).
			r.owedNL = true
			return r.continueFrom(path, l)
		}
		r.torn, r.midLine = cur.frag, true
	}
	from, t := path, cur
	if cur.line == nil && !cur.tooLong {
		backups, err := listBackups(path)
		if err != nil {
			r.detail = fmt.Sprintf("new chain: cannot list the backups of %s: %v", path, err)
			return r
		}
		if len(backups) == 0 {
			if cur.exists && cur.frag > 0 {
				r.detail = fmt.Sprintf("new chain: %s holds no complete line", path)
			} else {
				r.detail = fmt.Sprintf("new chain: no audit log at %s yet", path)
			}
			return r
		}
		from = backups[len(backups)-1].path
		if t, err = readFileTail(from); err != nil {
			r.detail = fmt.Sprintf("new chain: cannot read %s: %v", from, unwrapPath(err))
			return r
		}
		if t.frag > 0 {
			if l, err := ParseLine(t.fragBytes); err == nil && h.Check(t.fragBytes) {
				return r.continueFrom(from, l)
			}
		}
		r.torn += t.frag
		if t.line == nil && !t.tooLong {
			r.detail = fmt.Sprintf("new chain: %s, the newest backup, holds no complete line", from)
			return r
		}
	}
	if t.tooLong {
		r.detail = fmt.Sprintf("new chain: the last line of %s is longer than %d bytes", from, maxLine)
		return r
	}
	if len(t.line) >= suffixLen && isHex(t.line[len(t.line)-suffixLen+len(hashPrefix):len(t.line)-2]) {
		r.after = string(t.line[len(t.line)-suffixLen+len(hashPrefix) : len(t.line)-2])
	}
	l, err := ParseLine(t.line)
	if err != nil {
		r.detail = fmt.Sprintf("new chain: cannot continue %s: its last line is %v", from, err)
		return r
	}
	if !h.Check(t.line) {
		why := "edited, or written with another chain key"
		if h.Keyed() {
			why = "edited, written without a chain key, or with another one"
		}
		r.detail = fmt.Sprintf("new chain: cannot continue %s: its last line (seq %d) does not verify (%s)", from, l.Seq, why)
		return r
	}
	return r.continueFrom(from, l)
}

// continueFrom makes r continue the chain at l, the last line of file.
func (r resume) continueFrom(file string, l *Line) resume {
	r.after = ""
	r.head = &link{seq: l.Seq}
	copy(r.head.hash[:], l.Hash)
	r.detail = fmt.Sprintf("continues %s at seq %d", file, l.Seq)
	if l.Kind != KindStop {
		r.detail += "; the previous writer did not close the log (no audit.stop line): it crashed or was killed"
	}
	if r.torn > 0 {
		r.detail += fmt.Sprintf("; %d bytes of a torn write follow that line", r.torn)
	}
	return r
}
