package audit

import (
	"bufio"
	"errors"
	"io"
)

// physLine is one physical line of a file: the bytes up to a newline or
// the end of the file.
type physLine struct {
	// b is the line without its newline; nil when the line was longer than
	// the reader's bound (it was skipped, only counted).
	b []byte
	// size is the bytes the line takes in the file, newline included.
	size int64
	// nl reports whether the line ended with a newline (the last line of a
	// file may not: a torn write or truncation).
	nl bool
	// no is the line number in its file, from 1.
	no int
}

// lineReader reads physical lines of at most max bytes with bounded
// memory: a longer line is consumed and reported with b == nil.
type lineReader struct {
	r   *bufio.Reader
	buf []byte
	max int
	no  int
}

func newLineReader(r io.Reader, max int) *lineReader {
	return &lineReader{r: bufio.NewReaderSize(r, 64<<10), max: max}
}

// next returns the next line, or io.EOF after the last one.
func (lr *lineReader) next() (physLine, error) {
	lr.buf = lr.buf[:0]
	var size int64
	long := false
	for {
		frag, err := lr.r.ReadSlice('\n')
		size += int64(len(frag))
		if !long {
			if len(lr.buf)+len(frag) > lr.max+1 {
				long = true
				lr.buf = lr.buf[:0]
			} else {
				lr.buf = append(lr.buf, frag...)
			}
		}
		switch {
		case err == nil:
			lr.no++
			if long {
				return physLine{size: size, nl: true, no: lr.no}, nil
			}
			return physLine{b: lr.buf[:len(lr.buf)-1], size: size, nl: true, no: lr.no}, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if size == 0 {
				return physLine{}, io.EOF
			}
			lr.no++
			if long {
				return physLine{size: size, no: lr.no}, nil
			}
			return physLine{b: lr.buf, size: size, no: lr.no}, nil
		default:
			return physLine{}, err
		}
	}
}
