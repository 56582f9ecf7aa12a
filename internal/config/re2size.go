package config

import (
	"regexp/syntax"
	"unicode/utf8"
)

// RE2ProgramSize estimates the size of the RE2 program Envoy compiles a
// regex to, which Envoy refuses over its limit. Go's regexp/syntax
// compiles the same language to a similar program, but it matches runes
// where RE2 matches bytes: a character class is one Go instruction and
// about one RE2 instruction per byte range. The estimate adds RE2's fixed
// overhead (2) and the extra ranges of each class; measured against Envoy
// 1.40 it is exact or a little over, never under, on the regexes
// test/envoy checks (TestEnvoyRegexSizeEstimate).
func RE2ProgramSize(re string) (int, bool) {
	parsed, err := syntax.Parse(re, syntax.Perl)
	if err != nil {
		return 0, false
	}
	prog, err := syntax.Compile(parsed.Simplify())
	if err != nil {
		return 0, false
	}
	n := len(prog.Inst) + 2
	for _, in := range prog.Inst {
		switch in.Op {
		case syntax.InstRune:
			n += classExtra(in.Rune)
		case syntax.InstRuneAnyNotNL, syntax.InstRuneAny:
			n++ // any byte but \n, or any byte: RE2 needs one more in a loop
		}
	}
	return n, true
}

// classExtra is how many more RE2 instructions than one a class of rune
// ranges (lo, hi pairs) takes: one per further ASCII range; a class
// reaching past ASCII compiles to UTF-8 byte sequences, shared between
// ranges, counted as one per range up to eight.
func classExtra(ranges []rune) int {
	k := len(ranges) / 2
	if k == 0 {
		return 0
	}
	if ranges[len(ranges)-1] < utf8.RuneSelf {
		return k - 1
	}
	return min(k, 8)
}
