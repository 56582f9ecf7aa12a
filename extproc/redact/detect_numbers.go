package redact

// findNumbers finds payment card numbers (13-19 digits, optionally in
// groups separated by one space or dash, passing Luhn) and US social
// security numbers (AAA-GG-SSSS with valid area, group and serial). A
// number must stand alone: not glued to letters, digits or '*' (which
// also keeps a masked card's last four digits from being read again).
//
// Digit groups joined by single separators form a run ("ref 12 4111 1111
// 1111 1111 2nd"); a number may be any part of it. Only the run's first
// and last groups can be glued to a word, and only they are left out for
// it: a word next to the run must not hide a card inside it.
func findNumbers(s []byte, spans []span, cards, ssn bool) []span {
	var buf [24][2]int // most runs fit; longer ones grow on the heap
	i := 0
	for i < len(s) {
		if !isDigit(s[i]) {
			i++
			continue
		}
		start := i
		g := buf[:0]
		j := i
		for {
			gs := j
			for j < len(s) && isDigit(s[j]) {
				j++
			}
			g = append(g, [2]int{gs, j})
			if j+1 < len(s) && (s[j] == ' ' || s[j] == '-') && isDigit(s[j+1]) {
				j++
				continue
			}
			break
		}
		i = j
		if start > 0 && (isAlnum(s[start-1]) || s[start-1] == '*') {
			g = g[1:]
		}
		if j < len(s) && isAlpha(s[j]) && len(g) > 0 && g[len(g)-1][1] == j {
			g = g[:len(g)-1]
		}
		from := 0 // first group not yet part of a number found
		if ssn {
			for a := 0; a+2 < len(g); a++ {
				if isSSN(s, g[a:a+3], start, j) {
					if cards {
						spans = findCards(s, g[from:a], spans)
					}
					spans = append(spans, span{g[a][0], g[a+2][1], KindNationalID})
					from = a + 3
					a += 2
				}
			}
		}
		if cards {
			spans = findCards(s, g[from:], spans)
		}
	}
	return spans
}

// isSSN reports whether the three groups g of the run s[runStart:runEnd]
// are a social security number: 3, 2 and 4 digits, the same separator
// twice, and a different one (or none) joining them to the rest of the
// run, so that "555 123 45 6789" stays a phone number.
func isSSN(s []byte, g [][2]int, runStart, runEnd int) bool {
	if g[0][1]-g[0][0] != 3 || g[1][1]-g[1][0] != 2 || g[2][1]-g[2][0] != 4 {
		return false
	}
	sep := s[g[0][1]]
	if s[g[1][1]] != sep { // the same separator twice
		return false
	}
	if g[0][0] > runStart && s[g[0][0]-1] == sep || g[2][1] < runEnd && s[g[2][1]] == sep {
		return false
	}
	area := atoi(s[g[0][0]:g[0][1]])
	return area != 0 && area != 666 && area < 900 &&
		atoi(s[g[1][0]:g[1][1]]) != 0 && atoi(s[g[2][0]:g[2][1]]) != 0
}

func atoi(b []byte) int {
	n := 0
	for _, c := range b {
		n = n*10 + int(c-'0')
	}
	return n
}

// findCards tries, from each group on, the longest run of whole groups
// with 13-19 digits that passes Luhn.
func findCards(s []byte, g [][2]int, spans []span) []span {
	for a := 0; a < len(g); {
		found := -1
		n := 0
		for b := a; b < len(g); b++ {
			n += g[b][1] - g[b][0]
			if n > 19 {
				break
			}
			if n >= 13 && luhn(s[g[a][0]:g[b][1]]) {
				found = b // keep looking for a longer one
			}
		}
		if found < 0 {
			a++
			continue
		}
		spans = append(spans, span{g[a][0], g[found][1], KindCard})
		a = found + 1
	}
	return spans
}

// luhn checks the Luhn sum of the digits in b (separators skipped).
func luhn(b []byte) bool {
	sum, double := 0, false
	for i := len(b) - 1; i >= 0; i-- {
		c := b[i]
		if !isDigit(c) {
			continue
		}
		d := int(c - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum%10 == 0
}

// isCardNumber reports whether a JSON number token is a bare card number.
func isCardNumber(num []byte) bool {
	if len(num) < 13 || len(num) > 19 {
		return false
	}
	for _, c := range num {
		if !isDigit(c) {
			return false
		}
	}
	return luhn(num)
}
