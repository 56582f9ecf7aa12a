package audit

import (
	"errors"
	"fmt"
	"io"
	"time"
)

// maxMarks bounds the chain starts, gaps and torn writes a Report lists;
// the counts go on.
const maxMarks = 1000

// Mark is a notable line of a verified log: a chain start or a recorded
// loss.
type Mark struct {
	Pos
	Seq  uint64
	Time time.Time
	// N is the events lost (gap) or the bytes left by failed writes (torn).
	N int64
	// Detail is the audit.start line's explanation, or why a chain starts.
	Detail string
}

// Report is what Verify found.
type Report struct {
	// Files and Lines count the files read and the lines that verified.
	Files int
	Lines int64
	// Chains lists where chains begin: an audit.start line with seq 1, or
	// the first line of the set when it continues a chain from files not
	// given.
	Chains     []Mark
	ChainCount int
	// Gaps lists lines recording events lost before them; Lost sums them.
	Gaps     []Mark
	GapCount int
	Lost     uint64
	// Torn lists lines recording bytes of failed writes before them.
	Torn      []Mark
	TornCount int
	TornBytes int64
	// Head is the last line that verified.
	Head     Mark
	HeadHash string
	// Stopped reports whether the last line is an audit.stop line: the
	// writer closed the log. Otherwise it is still running, crashed, or
	// lines were removed from the end (which only an outside record of
	// the head, like gatehouse_audit_last_seq, can tell).
	Stopped bool
	// Problem is the first changed, removed, inserted or reordered line;
	// nil when the set is intact.
	Problem *Problem
}

// Problem is evidence of tampering (or damage) at a line.
type Problem struct {
	Pos
	Msg string
}

func (p *Problem) Error() string { return p.Pos.String() + ": " + p.Msg }

// good is a line that verified.
type good struct {
	pos  Pos
	seq  uint64
	hash string
	prev string
}

func (g *good) follows(p *good) bool { return p != nil && g.seq == p.seq+1 && g.prev == p.hash }

// verifier is Verify's state.
type verifier struct {
	it      *lines
	hashers []*Hasher
	plain   *Hasher // for the hint when keys are given
	keyed   bool
	// key is the index in hashers of the current chain's key, -1 before
	// a chain is known.
	key int
	rep *Report

	last, beforeLast *good
	seen             bool
	// damaged counts the bytes of lines that failed since last; damage is
	// the first of them.
	damaged int64
	damage  *Problem
}

// Verify reads srcs in order and checks the chain: every line's hash over
// its canonical bytes (with one of keys, or plain SHA-256 when keys is
// empty), its seq and prev against the line before, and that each
// damaged stretch is declared by the next line as a torn write. It stops
// at the first problem and says what it is. An error is returned only
// when a file cannot be read.
func Verify(srcs []Source, keys [][]byte) (*Report, error) {
	v := &verifier{it: &lines{srcs: srcs}, key: -1, rep: &Report{}}
	defer v.it.close()
	for _, k := range keys {
		v.hashers = append(v.hashers, NewHasher(k))
	}
	if len(v.hashers) == 0 {
		v.hashers = []*Hasher{NewHasher(nil)}
	} else {
		v.keyed, v.plain = true, NewHasher(nil)
	}
	for v.rep.Problem == nil {
		pl, pos, err := v.it.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		// Counted before the line: diagnosing a problem reads ahead.
		v.rep.Files = v.it.files
		v.line(pl, pos)
	}
	if v.rep.Problem == nil {
		v.rep.Files = v.it.files
	}
	if v.rep.Problem == nil && v.damaged > 0 {
		v.rep.Problem = v.damage
	}
	return v.rep, nil
}

// line checks one physical line. A line that lacks only its newline (the
// end of a file) is whole: what it records is intact.
func (v *verifier) line(pl physLine, pos Pos) {
	if pl.b == nil {
		v.damaged += pl.size
		v.noteDamage(pos, fmt.Sprintf("not an audit line: longer than %d bytes", maxLine))
		return
	}
	l, err := ParseLine(pl.b)
	if err != nil {
		v.damaged += pl.size
		if !pl.nl {
			msg := "incomplete line: the file was truncated, or the writer stopped mid-line (" + err.Error() + ")"
			if pos.File == v.it.srcs[len(v.it.srcs)-1].Name {
				msg += "; if gatehouse is writing this file right now, run verify again"
			}
			v.noteDamage(pos, msg)
		} else {
			v.noteDamage(pos, err.Error())
		}
		return
	}
	k := v.checkHash(pl.b, l)
	if k < 0 {
		v.damaged += pl.size
		v.noteDamage(pos, v.mismatch(pl.b))
		return
	}
	v.good(l, pos, k)
}

func (v *verifier) noteDamage(pos Pos, msg string) {
	if v.damage == nil {
		v.damage = &Problem{Pos: pos, Msg: msg}
	}
}

// checkHash returns the index of the hasher that verifies b: the chain's
// own key within a chain; any key where a chain may begin.
func (v *verifier) checkHash(b []byte, l *Line) int {
	if v.key >= 0 && v.hashers[v.key].Check(b) {
		return v.key
	}
	if v.key >= 0 && !l.Genesis() && v.last != nil {
		return -1
	}
	for i, h := range v.hashers {
		if h.Check(b) {
			return i
		}
	}
	return -1
}

func (v *verifier) mismatch(b []byte) string {
	switch {
	case v.keyed && v.plain.Check(b):
		return "hash mismatch: the line carries a plain SHA-256 hash, but the log is expected to be keyed (--key): it was written without audit.chainKey, or forged by someone without the key"
	case v.keyed:
		return "hash mismatch: the line was changed after it was written, forged without the key, or written with a key not given (--key)"
	default:
		return "hash mismatch: the line was changed after it was written (or the log is keyed: pass --key)"
	}
}

// good checks a line whose hash verified against the lines before it.
func (v *verifier) good(l *Line, pos Pos, k int) {
	g := &good{pos: pos, seq: l.Seq, hash: l.Hash, prev: l.Prev}
	first := !v.seen
	switch {
	case v.damaged == l.Torn:
	case first && v.damaged < l.Torn:
		// The rest of the torn bytes are at the end of a file not given.
	case v.damaged > 0:
		v.rep.Problem = v.damage
		if l.Torn > 0 {
			v.rep.Problem.Msg += fmt.Sprintf(" (the next line, %s, declares %d bytes of failed writes, not %d)", pos, l.Torn, v.damaged)
		}
		return
	default:
		v.problem(pos, "declares %d bytes of failed writes before it, but there are none: damaged lines were removed", l.Torn)
		return
	}

	switch {
	case l.Genesis():
		if l.Kind != KindStart {
			v.problem(pos, "seq 1 is a %s line: a chain can only begin with an audit.start line", l.Kind)
			return
		}
		if l.After != "" && v.last != nil && l.After != v.last.hash {
			v.problem(pos, "this new chain says the log it found ended with hash %.12s…, but the line before it (%s, seq %d) has hash %.12s…: lines were removed before it, or files are missing or out of order",
				l.After, v.last.pos, v.last.seq, v.last.hash)
			return
		}
		v.addMark(&v.rep.Chains, &v.rep.ChainCount, Mark{Pos: pos, Seq: 1, Time: l.Time, Detail: l.Detail})
		v.key = k
	case v.last == nil:
		v.addMark(&v.rep.Chains, &v.rep.ChainCount, Mark{Pos: pos, Seq: l.Seq, Time: l.Time,
			Detail: fmt.Sprintf("continues a chain from files not given (or removed) at seq %d", l.Seq)})
		v.key = k
	case g.follows(v.last):
	default:
		v.diagnose(g)
		return
	}
	if l.Torn > 0 {
		v.rep.TornBytes += l.Torn
		v.addMark(&v.rep.Torn, &v.rep.TornCount, Mark{Pos: pos, Seq: l.Seq, Time: l.Time, N: l.Torn})
	}
	if l.Gap > 0 {
		v.rep.Lost += l.Gap
		v.addMark(&v.rep.Gaps, &v.rep.GapCount, Mark{Pos: pos, Seq: l.Seq, Time: l.Time, N: int64(l.Gap)})
	}
	v.beforeLast, v.last, v.seen = v.last, g, true
	v.damaged, v.damage = 0, nil
	v.rep.Lines++
	v.rep.Head = Mark{Pos: pos, Seq: l.Seq, Time: l.Time}
	v.rep.HeadHash = l.Hash
	v.rep.Stopped = l.Kind == KindStop
}

func (v *verifier) addMark(list *[]Mark, count *int, m Mark) {
	*count++
	if len(*list) < maxMarks {
		*list = append(*list, m)
	}
}

func (v *verifier) problem(pos Pos, format string, args ...any) {
	v.rep.Problem = &Problem{Pos: pos, Msg: fmt.Sprintf(format, args...)}
}

// nextGood returns the next line that parses and verifies (with any key),
// skipping others, or nil at the end.
func (v *verifier) nextGood() (*good, error) {
	for {
		pl, pos, err := v.it.next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil, nil
			}
			return nil, err
		}
		if pl.b == nil {
			continue
		}
		l, err := ParseLine(pl.b)
		if err != nil {
			continue
		}
		for _, h := range v.hashers {
			if h.Check(pl.b) {
				return &good{pos: pos, seq: l.Seq, hash: l.Hash, prev: l.Prev}, nil
			}
		}
	}
}

// diagnose explains why x does not follow the last good line p, reading
// ahead as far as it needs: one line to tell an insertion or a swap, the
// rest of the set to tell a removal from a move.
func (v *verifier) diagnose(x *good) {
	p, pp := v.last, v.beforeLast
	y, err := v.nextGood()
	if err != nil {
		v.problem(x.pos, "does not follow the line before it (%s), and the rest cannot be read: %v", p.pos, err)
		return
	}
	hint := ""
	if x.pos.Line == 1 && x.pos.File != p.pos.File {
		hint = " (are the files in order? pass rotated backups oldest first, the current file last)"
	}
	switch {
	case x.follows(pp):
		// p and x both claim to follow pp.
		if y != nil && y.follows(p) {
			v.problem(x.pos, "inserted line: seq %d claims to follow %s, like the line before it; the line after it (%s) continues from that line%s", x.seq, pp.pos, y.pos, hint)
		} else {
			v.problem(p.pos, "inserted line: seq %d is not part of the chain; the line after it (%s) continues from %s%s", p.seq, x.pos, pp.pos, hint)
		}
	case y != nil && y.follows(p):
		if x.follows(y) {
			v.problem(x.pos, "lines swapped: seq %d comes before seq %d (%s)%s", x.seq, y.seq, y.pos, hint)
		} else {
			v.problem(x.pos, "inserted line: seq %d is not part of the chain; the line after it (%s) continues from the line before it (%s)%s", x.seq, y.pos, p.pos, hint)
		}
	case x.seq == p.seq+1:
		// Same place in the chain, other hash: one of the two was
		// changed and re-hashed (possible only without a key).
		if y != nil && y.follows(x) {
			v.problem(p.pos, "changed line: its hash was recomputed after an edit (or the line was replaced): the next line (%s) refers to another hash", x.pos)
		} else {
			v.problem(x.pos, "changed line: its prev does not match the hash of the line before it (%s)%s", p.pos, hint)
		}
	default:
		want := p.seq + 1
		where, err := v.find(want, p.hash, y)
		switch {
		case err != nil:
			v.problem(x.pos, "expected seq %d after %s, found seq %d (the rest cannot be read: %v)", want, p.pos, x.seq, err)
		case where != nil:
			v.problem(x.pos, "lines reordered: expected seq %d after %s, found seq %d; seq %d is at %s%s", want, p.pos, x.seq, want, *where, hint)
		case x.seq > want:
			missing := fmt.Sprintf("seq %d is missing", want)
			if n := x.seq - want; n > 1 {
				missing = fmt.Sprintf("seq %d–%d are missing", want, x.seq-1)
			}
			v.problem(x.pos, "removed %s: seq %d follows seq %d (%s); %s%s", plural(x.seq-want, "line", "lines"), x.seq, p.seq, p.pos, missing, hint)
		default:
			v.problem(x.pos, "out of order: seq %d follows seq %d (%s): a duplicated, replayed or moved line%s", x.seq, p.seq, p.pos, hint)
		}
	}
}

// find looks for the line with seq that follows hash in the rest of the
// set, starting with y.
func (v *verifier) find(seq uint64, hash string, y *good) (*Pos, error) {
	for g := y; ; {
		if g == nil {
			return nil, nil
		}
		if g.seq == seq && g.prev == hash {
			return &g.pos, nil
		}
		var err error
		if g, err = v.nextGood(); err != nil {
			return nil, err
		}
	}
}

func plural(n uint64, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
