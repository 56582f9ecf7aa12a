package audit

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// Source is one file of an audit log set, read in the order given
// (rotated backups oldest first, then the current file).
type Source struct {
	// Name is shown in positions (file:line).
	Name string
	// Open opens the file; nil means os.Open(Name).
	Open func() (io.ReadCloser, error)
}

// Files returns a Source per path.
func Files(paths ...string) []Source {
	out := make([]Source, len(paths))
	for i, p := range paths {
		out[i] = Source{Name: p}
	}
	return out
}

// Pos is a place in a set of files.
type Pos struct {
	File string
	Line int
}

func (p Pos) String() string { return fmt.Sprintf("%s:%d", p.File, p.Line) }

// lines iterates over the physical lines of a set of sources with
// bounded memory. The line returned by next is valid until the next call.
type lines struct {
	srcs []Source
	i    int
	rc   io.ReadCloser
	lr   *lineReader
	// files counts the sources opened.
	files int
}

func (it *lines) next() (physLine, Pos, error) {
	for {
		if it.lr == nil {
			if it.i >= len(it.srcs) {
				return physLine{}, Pos{}, io.EOF
			}
			s := it.srcs[it.i]
			var rc io.ReadCloser
			var err error
			if s.Open != nil {
				rc, err = s.Open()
			} else {
				rc, err = os.Open(s.Name)
			}
			if err != nil {
				return physLine{}, Pos{}, fmt.Errorf("audit: %w", unwrapPath(err))
			}
			it.rc, it.lr = rc, newLineReader(rc, maxLine)
			it.files++
		}
		pl, err := it.lr.next()
		if errors.Is(err, io.EOF) {
			_ = it.rc.Close()
			it.rc, it.lr = nil, nil
			it.i++
			continue
		}
		if err != nil {
			return physLine{}, Pos{}, fmt.Errorf("audit: read %s: %w", it.srcs[it.i].Name, err)
		}
		return pl, Pos{File: it.srcs[it.i].Name, Line: pl.no}, nil
	}
}

func (it *lines) close() {
	if it.rc != nil {
		_ = it.rc.Close()
		it.rc, it.lr = nil, nil
	}
}
