package audit

import (
	"io"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// sink is one output with its own chain. The writer goroutine alone uses
// it. Lines are appended to buf and written together by flush; the chain
// state describes the sink as if buf were already written, and committed
// keeps the state after the last successful write, to roll back to when a
// write fails part way.
type sink struct {
	name string
	w    io.Writer
	file *rotFile // nil for stdout
	log  *slog.Logger

	st        chainState
	committed chainState

	buf     []byte
	scratch []byte
	marks   []mark

	lines     prometheus.Counter
	lostLines prometheus.Counter
	lastSeq   prometheus.Gauge
	writeErrs *prometheus.CounterVec

	// failing is set during a streak of failed writes, so that a full disk
	// logs once when it starts, now and then while it lasts, and once when
	// it ends, rather than once per line.
	failing   bool
	lastLog   time.Time
	streakErr int
	lastErr   error
}

// chainState is a sink's position in its chain.
type chainState struct {
	head    link
	hasHead bool // false: the next line begins a new chain
	// gap counts events lost since head (not yet recorded in a line).
	gap uint64
	// torn counts bytes written after head that are not a complete line.
	torn int64
	// midLine says the sink's last byte is not a newline (a torn write):
	// the next line starts with one, and that newline counts as torn.
	midLine bool
	// owedNL says head was written whole but for its newline: the next
	// line starts with one, which completes head (it is not torn).
	owedNL bool
	// after goes into the next line (the audit.start line of a new chain
	// that could not continue the line it found).
	after string
}

// mark is what flush needs to know of each line in buf.
type mark struct {
	start, end int // offsets of the line in buf, the leading newline included
	// pre is 1 when the line starts with a newline; preTorn says that
	// newline ends a torn line (and is counted in the line's torn).
	pre     int
	preTorn bool
	gap     uint64 // gap declared in the line
	head    link   // the line's seq and hash
}

func newSink(name string, w io.Writer, file *rotFile, m *metrics, log *slog.Logger) *sink {
	return &sink{
		name: name, w: w, file: file, log: log,
		lines:     m.lines.WithLabelValues(name),
		lostLines: m.lostLines.WithLabelValues(name),
		lastSeq:   m.lastSeq.WithLabelValues(name),
		writeErrs: m.writeErrors,
	}
}

// encode builds the line for event members ev into s.scratch, from the
// current state, and returns it with its mark (end relative to the line).
func (s *sink) encode(ev []byte, lost uint64, h *Hasher) ([]byte, mark) {
	c := chainFields{seq: 1, gap: s.st.gap + lost, torn: s.st.torn, after: s.st.after}
	if s.st.hasHead {
		c.seq = s.st.head.seq + 1
		c.prev = &s.st.head
	}
	b := s.scratch[:0]
	m := mark{}
	switch {
	case s.st.midLine:
		b = append(b, '\n')
		c.torn++
		m.pre, m.preTorn = 1, true
	case s.st.owedNL:
		b = append(b, '\n')
		m.pre = 1
	}
	b, sum := appendLine(b, c, ev, h)
	s.scratch = b
	m.end, m.gap, m.head = len(b), c.gap, link{seq: c.seq}
	copy(m.head.hash[:], sum)
	return b, m
}

// add appends the line for ev, rotating the file first when the line
// would take it past its size.
func (s *sink) add(ev []byte, lost uint64, h *Hasher, m *metrics) {
	line, mk := s.encode(ev, lost, h)
	if s.file != nil && s.file.wantRotate(len(s.buf), len(line)) {
		s.flush()
		rotated, err := s.file.rotate()
		if err != nil {
			s.fail("rotate", err, 0)
		}
		if rotated {
			m.rotations.Inc()
			// A new file starts at a line boundary: re-encode without the
			// newline that would have ended the old file's last line.
			s.st.midLine, s.st.owedNL = false, false
			s.committed.midLine, s.committed.owedNL = false, false
		}
		line, mk = s.encode(ev, lost, h)
	}
	mk.start, mk.end = len(s.buf), mk.end+len(s.buf)
	s.buf = append(s.buf, line...)
	s.marks = append(s.marks, mk)
	s.st = chainState{head: mk.head, hasHead: true}
}

// flush writes buf. When the write fails part way, the lines written in
// full stay in the chain, the bytes of a line written in part are counted
// as torn, and the lines not written become the gap of the next line.
func (s *sink) flush() {
	if len(s.buf) == 0 {
		return
	}
	n, err := s.w.Write(s.buf)
	if err == nil && n < len(s.buf) {
		err = io.ErrShortWrite
	}
	if err == nil {
		s.lines.Add(float64(len(s.marks)))
		s.lastSeq.Set(float64(s.st.head.seq))
		s.committed = s.st
		s.buf, s.marks = s.buf[:0], s.marks[:0]
		if s.failing {
			s.failing = false
			s.log.Warn("audit writes recovered; the lines lost are recorded as a gap in the next line", "sink", s.name, "failed_writes", s.streakErr)
			s.streakErr = 0
		}
		return
	}
	// k lines were written in full.
	k := 0
	for k < len(s.marks) && s.marks[k].end <= n {
		k++
	}
	st := s.committed
	if k > 0 {
		st = chainState{head: s.marks[k-1].head, hasHead: true}
	}
	written := k
	if k < len(s.marks) {
		mk := s.marks[k]
		if w := n - mk.start; w > 0 {
			c := w - mk.pre // bytes of the line itself
			switch {
			case c == mk.end-mk.start-mk.pre-1:
				// All but the newline: the line is whole, and the next
				// write begins with the newline it is owed.
				st = chainState{head: mk.head, hasHead: true, owedNL: true}
				written++
			case mk.preTorn:
				st.torn += int64(w)
				st.midLine, st.owedNL = c > 0, false
			default:
				st.torn += int64(c)
				st.midLine, st.owedNL = c > 0, false
			}
		}
	}
	if written > 0 {
		s.lines.Add(float64(written))
		s.lastSeq.Set(float64(st.head.seq))
	}
	// The first line not written declared the gap pending before it; each
	// later one only its own: together they are what the next line owes.
	var lost uint64
	if written < len(s.marks) {
		st.gap = 0
		for _, mk := range s.marks[written:] {
			st.gap += mk.gap + 1
			lost++
		}
	}
	s.lostLines.Add(float64(lost))
	s.st, s.committed = st, st
	s.buf, s.marks = s.buf[:0], s.marks[:0]
	s.fail("write", err, lost)
}

// fail counts and logs a failed operation.
func (s *sink) fail(op string, err error, lost uint64) {
	s.writeErrs.WithLabelValues(s.name, op).Inc()
	s.streakErr++
	s.lastErr = err
	now := time.Now()
	if s.failing && now.Sub(s.lastLog) < 10*time.Second {
		return
	}
	s.failing, s.lastLog = true, now
	s.log.Error("audit sink failing; lost lines are recorded as a gap in the next line written", "sink", s.name, "op", op, "err", err, "lines_lost", lost, "failures", s.streakErr)
}
