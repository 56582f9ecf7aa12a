// Package redact masks secrets and personal data in JSON bodies before
// they leave the mesh: values at configured JSONPaths, and e-mail
// addresses, payment card numbers, national id numbers and bearer tokens
// wherever they occur in a string.
//
// It is a hand-written single-pass scanner rather than encoding/json:
// decoding a 64 KiB body into interface values and encoding it again costs
// several times the 100 MB/s per core budget, while a scan that copies
// untouched bytes through (and allocates nothing for a body without
// secrets) stays well inside it. Nesting is tracked on a heap stack, so
// depth is bounded only by the body size limit, never by the goroutine
// stack, and a deeply nested body cannot hide a secret.
package redact

import (
	"errors"
	"regexp"
	"sync"

	"github.com/gatehouse/gatehouse/internal/jsonx"
)

// ErrNotJSON is returned (with the body unchanged) for a body that is not
// one valid JSON text.
var ErrNotJSON = errors.New("redact: body is not valid JSON")

// A body that is JSON but breaks a rule of Options.JSON comes back
// unchanged with jsonx.ErrTrailingData or jsonx.ErrDuplicateName: its
// readers may not agree on what it says, so the caller refuses it rather
// than send on a body whose masking a client could read around.

// Options configure a Redactor.
type Options struct {
	// Paths are JSONPath expressions whose values are replaced by Mask.
	Paths []string
	// Mask replaces path-selected values (as a JSON string).
	Mask string
	// Built-in detectors, applied to every string (and to numbers, for
	// cards).
	Email, Cards, NationalIDs, BearerTokens bool
	// NationalIDPatterns are further patterns masked in strings
	// (compiled by config, unanchored).
	NationalIDPatterns []*regexp.Regexp
	// JSON are the departures from strict JSON tolerated. With
	// AllowTrailingData a body is read as a sequence of JSON texts, each
	// masked; with AllowDuplicateNames every member of a name is masked
	// as the paths say.
	JSON jsonx.Rules
}

// Redactor masks bodies. It is immutable and safe for concurrent use.
type Redactor struct {
	m       matcher
	mask    []byte // Mask as a JSON string, quotes included
	det     detectors
	json    jsonx.Rules
	scratch sync.Pool
}

// New compiles o.
func New(o Options) (*Redactor, error) {
	r := &Redactor{det: detectors{email: o.Email, cards: o.Cards, nationalIDs: o.NationalIDs, bearer: o.BearerTokens}, json: o.JSON}
	for _, p := range o.Paths {
		segs, err := compilePath(p)
		if err != nil {
			return nil, err
		}
		r.m.paths = append(r.m.paths, segs)
	}
	r.det.patterns = append(r.det.patterns, o.NationalIDPatterns...)
	mask := o.Mask
	if mask == "" {
		mask = "[REDACTED]"
	}
	r.mask = jsonx.AppendString(nil, mask)
	r.scratch.New = func() any { return new(scanner) }
	return r, nil
}

// Redact returns body with what r selects masked, and what it masked. The
// result is body itself (not a copy) when nothing was masked. A body that
// is not valid JSON comes back unchanged with ErrNotJSON; one that breaks
// a rule of Options.JSON, unchanged with jsonx.ErrTrailingData or
// jsonx.ErrDuplicateName.
func (r *Redactor) Redact(body []byte) ([]byte, Counts, error) {
	s := r.scratch.Get().(*scanner)
	s.reset(r, body)
	err := s.run()
	if errors.Is(err, errSyntax) && s.textDone {
		// A client's streaming decoder reads the first text and stops:
		// sent on unchanged, what it reads would be unmasked.
		err = jsonx.ErrTrailingData
	}
	out, counts := s.out, s.counts
	if err == nil && out != nil {
		out = append(out, body[s.last:]...)
	}
	s.release()
	r.scratch.Put(s)
	if err != nil {
		return body, Counts{}, err
	}
	if out == nil {
		return body, counts, nil
	}
	return out, counts, nil
}
