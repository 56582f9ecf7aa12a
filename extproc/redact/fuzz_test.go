package redact

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/jsonx"
)

// FuzzRedact checks the properties redaction promises on any input:
// valid JSON stays valid JSON with no detectable secret left in any string
// (as a client decodes it), key or card-like number; anything else comes
// back unchanged; and it never panics.
func FuzzRedact(f *testing.F) {
	for _, s := range []string{
		`{"a":"jane@example.com","b":[4111111111111111,"4111 1111 1111 1111"],"c":{"ssn":"123-45-6789"}}`,
		`{"h":"Bearer abc123def456","t":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig"}`,
		`["\u0040", "a\\"b", "\ud83d\ude00", "\ud800"]`,
		`{"user":{"password":"x","cards":[{"number":"5500-0000-0000-0004"}]}}`,
		"{\"a\":\"\xff\xfe jane@example.com\"}",
		`[[[[[[[[[[]]]]]]]]]]`, `{"a":1e10,"b":-0.5,"c":true,"d":null}`, `{`, `nope`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Add([]byte("\xef\xbb\xbf{\"a\":\"jane@example.com\"}"))
	r, err := New(Options{
		Paths: []string{"$.user.password", "$..number", "$.a[0]", "$..*.secret"},
		Email: true, Cards: true, NationalIDs: true, BearerTokens: true,
	})
	if err != nil {
		f.Fatal(err)
	}
	// The time bound catches super-linear inputs while fuzzing only: as a
	// unit test (the seed corpus under go test) a wall-clock limit would
	// measure the neighbours on a shared machine, not the scanner.
	fuzzing := flag.Lookup("test.fuzz") != nil && flag.Lookup("test.fuzz").Value.String() != ""
	f.Fuzz(func(t *testing.T, in []byte) {
		t0 := time.Now()
		defer func() {
			if d := time.Since(t0); fuzzing && d > 5*time.Second {
				t.Fatalf("slow input (%v, %d bytes): %q", d, len(in), in[:min(len(in), 200)])
			}
		}()
		orig := bytes.Clone(in)
		out, counts, err := r.Redact(in)
		if !bytes.Equal(in, orig) {
			t.Fatalf("Redact modified its input")
		}
		// A leading byte order mark is skipped, as clients do.
		body := bytes.TrimPrefix(in, []byte(bom))
		valid := json.Valid(body)
		if err != nil {
			if !bytes.Equal(out, in) || counts.Total() != 0 {
				t.Fatalf("Redact(%q) = %q, %v; want the input unchanged", in, out, err)
			}
			switch {
			case errors.Is(err, jsonx.ErrDuplicateName):
				// Valid JSON to encoding/json, which keeps the last name.
				if !errors.Is(jsonx.Check(body, jsonx.Rules{}), jsonx.ErrDuplicateName) {
					t.Fatalf("Redact(%q) = %v; jsonx.Check finds no duplicate", in, err)
				}
			case errors.Is(err, ErrNotJSON), errors.Is(err, jsonx.ErrTrailingData):
				if valid {
					t.Fatalf("Redact(%q) refused valid JSON: %v", in, err)
				}
			default:
				t.Fatalf("Redact(%q) error %v", in, err)
			}
			return
		}
		if !valid {
			// Only nesting deeper than encoding/json's limit is ours to accept.
			if bytes.Count(in, []byte("["))+bytes.Count(in, []byte("{")) < 10000 {
				t.Fatalf("Redact(%q) accepted invalid JSON", in)
			}
			return
		}
		if len(body) < len(in) {
			if !bytes.HasPrefix(out, []byte(bom)) {
				t.Fatalf("Redact(%q) = %q dropped the byte order mark", in, out)
			}
			out = out[len(bom):]
		}
		if !json.Valid(out) {
			t.Fatalf("Redact(%q) = %q, which is not valid JSON", in, out)
		}
		if counts.Total() == 0 && !bytes.Equal(out, body) {
			t.Fatalf("Redact(%q) = %q changed the body without counting a mask", in, out)
		}
		d := json.NewDecoder(bytes.NewReader(out))
		d.UseNumber()
		var v any
		if err := d.Decode(&v); err != nil {
			t.Fatalf("decode output %q: %v", out, err)
		}
		checkClean(t, &r.det, v, out)
	})
}

// FuzzRedactRelaxed: with both JSON rules relaxed, a body is a sequence of
// JSON texts; what comes out is a sequence of valid texts with nothing a
// detector finds, or the body unchanged with an error.
func FuzzRedactRelaxed(f *testing.F) {
	for _, s := range []string{
		`{"a":"jane@example.com"} {"a":"x","a":"4111 1111 1111 1111"}`, `1 2 3`, `{"p":"x"}{"p":"y"}` + "\n", `[] x`, `{"a":1,"a":{"b":2,"b":3}}`,
	} {
		f.Add([]byte(s))
	}
	r, err := New(Options{
		Paths: []string{"$.p", "$..number"}, Email: true, Cards: true, NationalIDs: true, BearerTokens: true,
		JSON: jsonx.Rules{AllowTrailingData: true, AllowDuplicateNames: true},
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, counts, err := r.Redact(in)
		if err != nil {
			if !bytes.Equal(out, in) || counts.Total() != 0 {
				t.Fatalf("Redact(%q) = %q, %v; want the input unchanged", in, out, err)
			}
			if errors.Is(err, jsonx.ErrDuplicateName) {
				t.Fatalf("Redact(%q) = %v with duplicates allowed", in, err)
			}
			return
		}
		out = bytes.TrimPrefix(out, []byte(bom))
		d := json.NewDecoder(bytes.NewReader(out))
		d.UseNumber()
		n := 0
		for {
			var v any
			err := d.Decode(&v)
			if err == io.EOF {
				break
			}
			if err != nil {
				if bytes.Count(in, []byte("["))+bytes.Count(in, []byte("{")) >= 10000 {
					return // deeper than encoding/json reads
				}
				t.Fatalf("Redact(%q) = %q: text %d is not valid JSON: %v", in, out, n, err)
			}
			checkClean(t, &r.det, v, out)
			n++
		}
		if n == 0 {
			t.Fatalf("Redact(%q) = %q accepted no JSON text", in, out)
		}
	})
}

func checkClean(t *testing.T, d *detectors, v any, out []byte) {
	t.Helper()
	check := func(s string) {
		if sp := d.find([]byte(s), nil, flagsOf([]byte(s))); len(sp) > 0 {
			t.Fatalf("output %q still holds %v %q", out, sp[0].kind, s[sp[0].start:sp[0].end])
		}
	}
	switch v := v.(type) {
	case string:
		check(v)
	case json.Number:
		if isCardNumber([]byte(v)) {
			t.Fatalf("output %q still holds card number %s", out, v)
		}
	case []any:
		for _, x := range v {
			checkClean(t, d, x, out)
		}
	case map[string]any:
		for k, x := range v {
			check(k)
			checkClean(t, d, x, out)
		}
	}
}
