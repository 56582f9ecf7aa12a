package algo

// Kind is a rate limit algorithm.
type Kind uint8

// Algorithms.
const (
	// Fixed counts hits per window; a request is admitted while the
	// window's count plus its hits stays within the limit.
	Fixed Kind = iota
	// Sliding estimates the hits of the last window-length as the current
	// window's count plus the previous window's count weighted by the
	// share of it still inside the sliding window. In any span d ≤ window
	// around a window edge it admits at most limit·(1 + d/window), where a
	// fixed window admits up to 2·limit (the double burst).
	Sliding
	// GCRA is the generic cell rate algorithm: a token bucket of Burst
	// tokens refilled at limit per window, stored as one theoretical
	// arrival time.
	GCRA
)

// String names the algorithm as in config.
func (k Kind) String() string {
	switch k {
	case Fixed:
		return "fixed"
	case Sliding:
		return "sliding"
	case GCRA:
		return "gcra"
	}
	return "unknown"
}

// Spec is one limit, ready to evaluate.
type Spec struct {
	Kind  Kind
	Limit uint64
	// Burst is the GCRA bucket size.
	Burst uint64
	// Emission is the GCRA emission interval: microseconds per token,
	// rounded up so that rounding never admits more than the limit.
	Emission int64
}

// NewGCRA returns the spec of a GCRA limit of limit per window with the
// given burst (0 means limit).
func NewGCRA(limit, burst uint64, window int64) Spec {
	if burst == 0 {
		burst = limit
	}
	e := window / int64(limit)
	if window%int64(limit) != 0 {
		e++
	}
	return Spec{Kind: GCRA, Limit: limit, Burst: burst, Emission: e}
}

// State is what the store keeps of one limit's key(s).
//
//	Fixed:   A = the window's count
//	Sliding: A = previous window's count, B = current window's count
//	GCRA:    A = theoretical arrival time (Unix µs; 0 = full bucket)
type State struct{ A, B int64 }

// Clock is the time of one decision: now and, for fixed and sliding
// windows, the bounds of the current window. All in Unix microseconds.
type Clock struct{ Now, Start, End int64 }

// Decision is the outcome of one limit for one request.
type Decision struct {
	Allowed bool
	// Remaining is what the limit still admits: after this request when
	// allowed, as it stands when refused.
	Remaining uint64
	// Reset is how long until the limit is whole again (µs): the end of a
	// fixed window, or until a GCRA bucket is full.
	Reset int64
	// RetryAfter is, when refused, how long until a request of the same
	// hits could be admitted (µs); -1 means never (hits above the limit).
	RetryAfter int64
}

// Allowed reports whether a request of hits fits the limit in state st.
// It is the decision the Lua script makes, operation for operation.
func (s *Spec) Allowed(st State, c Clock, hits uint64) bool {
	switch s.Kind {
	case Sliding:
		return slidingEstimate(st, c)+float64(hits) <= float64(s.Limit)
	case GCRA:
		if hits > s.Burst {
			return false
		}
		tat := max(st.A, c.Now)
		return tat+int64(hits)*s.Emission <= c.Now+int64(s.Burst)*s.Emission
	default:
		return uint64(max(st.A, 0))+hits <= s.Limit
	}
}

// slidingEstimate is prev·(end−now)/(end−start) + curr. The explicit
// conversions keep the compiler from fusing operations, so the result is
// bit for bit the one Lua computes.
func slidingEstimate(st State, c Clock) float64 {
	w := float64(c.End - c.Start)
	p := float64(float64(st.A) * float64(c.End-c.Now))
	return float64(p/w) + float64(st.B)
}

// Apply returns the state after admitting hits (whether or not the limit
// allowed them: envoyproxy/ratelimit's fixed windows count refused hits).
func (s *Spec) Apply(st State, c Clock, hits uint64) State {
	switch s.Kind {
	case Sliding:
		st.B += int64(hits)
	case GCRA:
		if hits > 0 {
			st.A = max(st.A, c.Now) + int64(hits)*s.Emission
		}
	default:
		st.A += int64(hits)
	}
	return st
}

// Refund returns the state after giving hits back (Envoy's
// is_negative_hits). A counter never goes below zero: a fixed window's
// count, and a sliding window's current count, then what remains from the
// previous window's (the hits may have been charged before the window
// turned); a GCRA bucket is never fuller than full (the arrival time never
// goes below now). It is the refund the Lua script makes, operation for
// operation.
func (s *Spec) Refund(st State, c Clock, hits uint64) State {
	h := int64(hits)
	switch s.Kind {
	case Sliding:
		cur := min(max(st.B, 0), h)
		st.B -= cur
		st.A -= min(max(st.A, 0), h-cur)
	case GCRA:
		if st.A > c.Now {
			st.A = max(st.A-h*s.Emission, c.Now)
		}
	default:
		st.A -= min(max(st.A, 0), h)
	}
	return st
}

// Decide reports the outcome of a request of hits on state st. applied
// says whether the store consumed the hits (for an all-or-nothing group
// that is: every limit of the group allowed them).
func (s *Spec) Decide(st State, c Clock, hits uint64, applied bool) Decision {
	d := Decision{Allowed: s.Allowed(st, c, hits)}
	after := st
	if applied {
		after = s.Apply(st, c, hits)
	}
	switch s.Kind {
	case Sliding:
		est := slidingEstimate(after, c)
		if est < float64(s.Limit) {
			d.Remaining = uint64(float64(s.Limit) - est)
		}
		d.Reset = c.End - c.Now
		if !d.Allowed {
			d.RetryAfter = s.slidingRetry(st, c, hits)
		}
	case GCRA:
		tat := max(after.A, c.Now)
		room := c.Now + int64(s.Burst)*s.Emission - tat
		if room > 0 {
			d.Remaining = uint64(room / s.Emission)
		}
		d.Reset = tat - c.Now
		if !d.Allowed {
			if hits > s.Burst {
				d.RetryAfter = -1
			} else {
				d.RetryAfter = max(st.A, c.Now) + int64(hits)*s.Emission - int64(s.Burst)*s.Emission - c.Now
			}
		}
	default:
		if n := uint64(max(after.A, 0)); n < s.Limit {
			d.Remaining = s.Limit - n
		}
		d.Reset = c.End - c.Now
		if !d.Allowed {
			if hits > s.Limit {
				d.RetryAfter = -1
			} else {
				d.RetryAfter = c.End - c.Now
			}
		}
	}
	if d.Allowed && !applied && hits > 0 {
		// Another limit of the group refused: nothing was consumed, and
		// this limit alone does not decide when to retry.
		d.Allowed = false
	}
	return d
}

// slidingRetry is how long until prev·(end−t)/(end−start) + curr + hits
// fits the limit again: later in this window as the previous window's
// weight fades, or in the next window, where this window is the previous.
func (s *Spec) slidingRetry(st State, c Clock, hits uint64) int64 {
	lim, h := float64(s.Limit), float64(hits)
	if h > lim {
		return -1
	}
	w := float64(c.End - c.Start)
	prev, curr := float64(st.A), float64(st.B)
	if curr+h <= lim && prev > 0 {
		// Wait for t with prev·(end−t)/w ≤ lim−curr−h.
		t := float64(c.End) - (lim-curr-h)*w/prev
		return max(ceilMicros(t)-c.Now, 1)
	}
	// Next window: weight curr by (nextEnd−t)/w with w the same length.
	if curr <= 0 {
		return max(c.End-c.Now, 1)
	}
	t := float64(c.End) + w - (lim-h)*w/curr
	return max(ceilMicros(t)-c.Now, c.End-c.Now, 1)
}

func ceilMicros(f float64) int64 {
	i := int64(f)
	if float64(i) < f {
		i++
	}
	return i
}
