package jsonx

import (
	"bytes"
	"hash/maphash"
	"unicode/utf8"
)

// Names finds duplicate member names (RFC 7493 §2.3) while a scanner walks
// a JSON text: the scanner calls Open at each object, Add with each
// member's name, and Close at the object's end. Both of gatehouse's JSON
// scanners (Check here, the redaction scanner) use it, so that they call
// the same two names equal.
//
// Names compare as decoded text (escapes resolved, which the caller does)
// with invalid UTF-8 replaced by U+FFFD, as encoding/json decodes them:
// two names that any of the readers involved would merge are duplicates.
// An object's first 16 names are compared in a list; a larger object
// moves to a hash set, so that a body of many members costs linear time,
// not quadratic.
//
// The zero value is ready; Reset makes it reusable (its memory is kept).
type Names struct {
	seed   maphash.Seed
	seeded bool
	// open are the objects being read, innermost last.
	open []nameFrame
	// entries are the names of the open objects, in order.
	entries []nameEntry
	// arena holds the normalized bytes of entries.
	arena []byte
	// big indexes the names of objects with more than smallObject members,
	// by object number and hash.
	big   map[nameKey]int32
	objID uint32
	norm  []byte
}

type nameFrame struct {
	id    uint32
	first int // index of its first entry
	arena int // arena length when it opened
	big   bool
	// sigs has a bit set per member name's signature (length and end
	// bytes): a name whose bit is clear cannot be a duplicate, which
	// spares most names any comparison.
	sigs uint64
}

type nameEntry struct {
	h        uint64 // set once the object is big
	off, end int32
}

type nameKey struct {
	obj uint32
	h   uint64
}

// smallObject is the member count up to which names are compared in a
// list.
const smallObject = 16

// Reset forgets every object, keeping the memory for the next text.
func (n *Names) Reset() {
	n.open, n.entries, n.arena = n.open[:0], n.entries[:0], n.arena[:0]
	if len(n.big) > 4096 {
		n.big = nil // do not keep (or clear) a set sized by one huge body
	} else {
		clear(n.big)
	}
	n.objID = 0
	if cap(n.arena) > 64<<10 {
		n.arena = nil
	}
	if cap(n.entries) > 4096 {
		n.entries = nil
	}
}

// Open starts an object.
func (n *Names) Open() {
	if !n.seeded {
		n.seed, n.seeded = maphash.MakeSeed(), true
	}
	n.objID++
	n.open = append(n.open, nameFrame{id: n.objID, first: len(n.entries), arena: len(n.arena)})
}

// Close ends the innermost object.
func (n *Names) Close() {
	if len(n.open) == 0 {
		return
	}
	f := n.open[len(n.open)-1]
	n.open = n.open[:len(n.open)-1]
	n.entries, n.arena = n.entries[:f.first], n.arena[:f.arena]
}

// Add records the decoded name of a member of the innermost object and
// reports whether that object already has a member so named.
func (n *Names) Add(name []byte) (duplicate bool) {
	if len(n.open) == 0 {
		return false
	}
	name = n.normalize(name)
	f := &n.open[len(n.open)-1]
	if !f.big {
		// Few members: compare the names themselves, no hashing, and
		// only when the signature says one may match.
		bit := uint64(1) << sig(name)
		seen := f.sigs&bit != 0
		f.sigs |= bit
		for _, e := range n.entries[f.first:] {
			if !seen {
				break
			}
			if int(e.end-e.off) == len(name) && bytes.Equal(n.arena[e.off:e.end], name) {
				return true
			}
		}
		n.push(0, name)
		if len(n.entries)-f.first > smallObject {
			f.big = true
			if n.big == nil {
				n.big = make(map[nameKey]int32)
			}
			for i := f.first; i < len(n.entries); i++ {
				e := &n.entries[i]
				e.h = maphash.Bytes(n.seed, n.arena[e.off:e.end])
				n.big[nameKey{f.id, e.h}] = int32(i)
			}
		}
		return false
	}
	h := maphash.Bytes(n.seed, name)
	k := nameKey{f.id, h}
	if i, ok := n.big[k]; ok {
		// A 64-bit hash under a random seed: two different names sharing
		// one is not something a sender can arrange.
		e := n.entries[i]
		return bytes.Equal(n.arena[e.off:e.end], name)
	}
	n.push(h, name)
	n.big[k] = int32(len(n.entries) - 1)
	return false
}

// sig is a 6-bit signature of a name: equal names have equal ones.
func sig(name []byte) uint {
	if len(name) == 0 {
		return 0
	}
	return (uint(len(name))*31 + uint(name[0])*7 + uint(name[len(name)-1])) & 63
}

func (n *Names) push(h uint64, name []byte) {
	off := len(n.arena)
	n.arena = append(n.arena, name...)
	n.entries = append(n.entries, nameEntry{h: h, off: int32(off), end: int32(len(n.arena))})
}

// normalize replaces invalid UTF-8 with U+FFFD, as encoding/json does;
// valid names (nearly all) come back as they are.
func (n *Names) normalize(name []byte) []byte {
	if utf8.Valid(name) {
		return name
	}
	n.norm = n.norm[:0]
	for len(name) > 0 {
		r, size := utf8.DecodeRune(name)
		n.norm = utf8.AppendRune(n.norm, r)
		name = name[size:]
	}
	return n.norm
}
