package audit

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"strconv"
)

// The canonical form of a line (docs/audit.md, "Line format"):
//
//	{"seq":N,"prev":"P"[,"gap":G][,"torn":T][,"after":"A"],<event fields>,"hash":"H"}\n
//
// H is the lower-case hex SHA-256 — or HMAC-SHA256 with the chain key — of
// the line's exact bytes up to (not including) `,"hash":"`, followed by the
// single byte '}'. In other words: drop the last 75 bytes of the line
// (`,"hash":"` + 64 hex digits + `"}`), append '}', hash that. P is the H
// of the line before (empty for the first line of a chain), so changing,
// removing, inserting or reordering a line breaks the links after it.
const (
	hashHexLen = 2 * sha256.Size
	hashPrefix = `,"hash":"`
	suffixLen  = len(hashPrefix) + hashHexLen + len(`"}`)
)

// maxLine bounds a line for the readers (verify, query, the tail read at
// start). The writer's field caps keep lines far below it.
const maxLine = 1 << 20

// Line is one parsed audit line: the chain fields and the event.
type Line struct {
	// Seq numbers the lines of a chain from 1.
	Seq uint64 `json:"seq"`
	// Prev is the Hash of the line before, empty for the first line of a
	// chain (an audit.start line).
	Prev string `json:"prev"`
	// Gap counts events lost since the line before: dropped because the
	// buffer was full, or not written because a write failed.
	Gap uint64 `json:"gap,omitempty"`
	// Torn counts the bytes between the line before and this one that a
	// failed write or a crash left behind (the remains of lost lines).
	Torn int64 `json:"torn,omitempty"`
	// After is, on an audit.start line that begins a new chain, the hash
	// written in the last line the writer found but could not continue
	// from (so that verify can tell that nothing was removed before it).
	After string `json:"after,omitempty"`
	Event
	// Hash is the line's own hash, as written.
	Hash string `json:"-"`
}

// wireLine is Line as decoded, to tell absent fields from zero ones.
type wireLine struct {
	Seq   *uint64         `json:"seq"`
	Prev  *string         `json:"prev"`
	Gap   uint64          `json:"gap"`
	Torn  int64           `json:"torn"`
	After string          `json:"after"`
	Hash  json.RawMessage `json:"hash"`
	Event
}

// ParseLine parses one line (without its newline). It checks the form —
// the hash suffix, JSON, the chain fields — but not the hash itself: see
// Hasher.Check.
func ParseLine(b []byte) (*Line, error) {
	if len(b) < suffixLen+2 || b[0] != '{' {
		return nil, errors.New("not an audit line")
	}
	n := len(b) - suffixLen
	if string(b[n:n+len(hashPrefix)]) != hashPrefix || string(b[len(b)-2:]) != `"}` {
		return nil, errors.New(`not an audit line: it does not end with ,"hash":"<64 hex digits>"}`)
	}
	h := b[n+len(hashPrefix) : len(b)-2]
	if !isHex(h) {
		return nil, errors.New("not an audit line: the hash is not 64 lower-case hex digits")
	}
	// The body is the line up to the hash member, closed with '}'.
	body := make([]byte, 0, n+1)
	body = append(append(body, b[:n]...), '}')
	var w wireLine
	if err := json.Unmarshal(body, &w); err != nil {
		return nil, fmt.Errorf("not an audit line: %v", err)
	}
	switch {
	case w.Hash != nil:
		return nil, errors.New("not an audit line: a second hash member")
	case w.Seq == nil || *w.Seq == 0:
		return nil, errors.New("not an audit line: no seq (from 1)")
	case w.Prev == nil:
		return nil, errors.New("not an audit line: no prev")
	case *w.Prev != "" && !isHex([]byte(*w.Prev)):
		return nil, errors.New("not an audit line: prev is not a hash")
	case w.After != "" && !isHex([]byte(w.After)):
		return nil, errors.New("not an audit line: after is not a hash")
	case w.Torn < 0:
		return nil, errors.New("not an audit line: torn is negative")
	case (*w.Prev == "") != (*w.Seq == 1):
		return nil, errors.New("not an audit line: seq 1 and only seq 1 has an empty prev")
	}
	return &Line{Seq: *w.Seq, Prev: *w.Prev, Gap: w.Gap, Torn: w.Torn, After: w.After, Event: w.Event, Hash: string(h)}, nil
}

// Genesis reports whether l begins a chain.
func (l *Line) Genesis() bool { return l.Seq == 1 && l.Prev == "" }

func isHex(b []byte) bool {
	if len(b) != hashHexLen {
		return false
	}
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Hasher computes and checks line hashes: SHA-256, or HMAC-SHA256 when a
// chain key is set. It is not safe for concurrent use.
type Hasher struct {
	h   hash.Hash
	sum [sha256.Size]byte
	hex [hashHexLen]byte
	// keyed tells an HMAC chain from a plain one, for messages.
	keyed bool
}

// NewHasher returns a Hasher for key; a nil or empty key means plain
// SHA-256.
func NewHasher(key []byte) *Hasher {
	if len(key) == 0 {
		return &Hasher{h: sha256.New()}
	}
	return &Hasher{h: hmac.New(sha256.New, key), keyed: true}
}

// Keyed reports whether h is an HMAC hasher.
func (h *Hasher) Keyed() bool { return h.keyed }

// sumHex hashes body and returns the hex digest (valid until the next
// call).
func (h *Hasher) sumHex(parts ...[]byte) []byte {
	h.h.Reset()
	for _, p := range parts {
		h.h.Write(p)
	}
	sum := h.h.Sum(h.sum[:0])
	hex.Encode(h.hex[:], sum)
	return h.hex[:]
}

var closeBrace = []byte{'}'}

// Check reports whether line (as parsed by ParseLine, without newline)
// carries the hash of its canonical body under h.
func (h *Hasher) Check(line []byte) bool {
	if len(line) < suffixLen {
		return false
	}
	n := len(line) - suffixLen
	got := h.sumHex(line[:n], closeBrace)
	want := line[n+len(hashPrefix) : len(line)-2]
	return subtle.ConstantTimeCompare(got, want) == 1
}

// link is a chain position: the last line written (or read at start).
type link struct {
	seq  uint64
	hash [hashHexLen]byte
}

// chainFields are the chain members that precede the event in a line.
type chainFields struct {
	seq   uint64
	prev  *link // nil: first line of a chain
	gap   uint64
	torn  int64
	after string
}

// appendLine appends the complete line (with its newline) for the chain
// fields c and the encoded event members ev, and returns the line's hash
// in hex (valid until the next use of h).
func appendLine(b []byte, c chainFields, ev []byte, h *Hasher) ([]byte, []byte) {
	start := len(b)
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, c.seq, 10)
	b = append(b, `,"prev":"`...)
	if c.prev != nil {
		b = append(b, c.prev.hash[:]...)
	}
	b = append(b, '"')
	if c.gap > 0 {
		b = append(b, `,"gap":`...)
		b = strconv.AppendUint(b, c.gap, 10)
	}
	if c.torn > 0 {
		b = append(b, `,"torn":`...)
		b = strconv.AppendInt(b, c.torn, 10)
	}
	if c.after != "" {
		b = append(b, `,"after":"`...)
		b = append(b, c.after...)
		b = append(b, '"')
	}
	b = append(b, ',')
	b = append(b, ev...)
	sum := h.sumHex(b[start:], closeBrace)
	b = append(b, hashPrefix...)
	b = append(b, sum...)
	b = append(b, '"', '}', '\n')
	return b, sum
}
