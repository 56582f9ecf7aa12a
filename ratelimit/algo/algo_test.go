package algo

import (
	"math/rand/v2"
	"testing"
	"time"
)

func us(t time.Time) int64 { return t.UnixMicro() }

func TestBounds(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	d := func(y int, m time.Month, day, h, min int, loc *time.Location) time.Time {
		return time.Date(y, m, day, h, min, 0, 0, loc)
	}
	tests := []struct {
		name       string
		w          Window
		now        time.Time
		start, end time.Time
	}{
		{"second", Window{Count: 1, Unit: Second}, time.Unix(100, 500_000), time.Unix(100, 0), time.Unix(101, 0)},
		{"5 minutes", Window{Count: 5, Unit: Minute}, d(2024, 3, 1, 10, 7, time.UTC), d(2024, 3, 1, 10, 5, time.UTC), d(2024, 3, 1, 10, 10, time.UTC)},
		{"day epoch-aligned", Window{Count: 1, Unit: Day}, d(2024, 3, 1, 23, 59, berlin), d(2024, 3, 1, 0, 0, time.UTC), d(2024, 3, 2, 0, 0, time.UTC)},
		{"week epoch-aligned starts thursday", Window{Count: 1, Unit: Week}, time.Unix(0, 0).Add(8 * 24 * time.Hour), time.Unix(7*86400, 0), time.Unix(14*86400, 0)},
		{"month non-calendar is 30 days", Window{Count: 1, Unit: Month}, time.Unix(31*86400, 0), time.Unix(30*86400, 0), time.Unix(60*86400, 0)},
		{"calendar day berlin", Window{Count: 1, Unit: Day, Calendar: true, Loc: berlin}, d(2024, 3, 1, 23, 59, berlin), d(2024, 3, 1, 0, 0, berlin), d(2024, 3, 2, 0, 0, berlin)},
		{"calendar day over DST (23h)", Window{Count: 1, Unit: Day, Calendar: true, Loc: berlin}, d(2024, 3, 31, 12, 0, berlin), d(2024, 3, 31, 0, 0, berlin), d(2024, 4, 1, 0, 0, berlin)},
		{"calendar week starts monday", Window{Count: 1, Unit: Week, Calendar: true, Loc: time.UTC}, d(2024, 3, 3, 12, 0, time.UTC), d(2024, 2, 26, 0, 0, time.UTC), d(2024, 3, 4, 0, 0, time.UTC)},
		{"calendar month new york", Window{Count: 1, Unit: Month, Calendar: true, Loc: ny}, d(2024, 2, 29, 23, 30, ny), d(2024, 2, 1, 0, 0, ny), d(2024, 3, 1, 0, 0, ny)},
		{"calendar quarter", Window{Count: 3, Unit: Month, Calendar: true, Loc: time.UTC}, d(2024, 5, 15, 0, 0, time.UTC), d(2024, 4, 1, 0, 0, time.UTC), d(2024, 7, 1, 0, 0, time.UTC)},
		{"calendar month december", Window{Count: 1, Unit: Month, Calendar: true, Loc: time.UTC}, d(2023, 12, 31, 23, 59, time.UTC), d(2023, 12, 1, 0, 0, time.UTC), d(2024, 1, 1, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, e := tt.w.Bounds(us(tt.now))
			if s != us(tt.start) || e != us(tt.end) {
				t.Errorf("Bounds(%v) = [%v, %v); want [%v, %v)", tt.now, time.UnixMicro(s).In(tt.now.Location()), time.UnixMicro(e).In(tt.now.Location()), tt.start, tt.end)
			}
		})
	}
}

// TestBoundsProperties checks on random times that now lies in its window
// and that the window before ends where this one starts.
func TestBoundsProperties(t *testing.T) {
	berlin, _ := time.LoadLocation("Europe/Berlin")
	r := rand.New(rand.NewPCG(1, 2))
	ws := []Window{
		{Count: 1, Unit: Second}, {Count: 7, Unit: Minute}, {Count: 1, Unit: Year},
		{Count: 1, Unit: Day, Calendar: true, Loc: berlin}, {Count: 2, Unit: Week, Calendar: true, Loc: berlin},
		{Count: 1, Unit: Month, Calendar: true, Loc: berlin}, {Count: 6, Unit: Month, Calendar: true, Loc: time.UTC},
	}
	for i := 0; i < 5000; i++ {
		w := ws[i%len(ws)]
		now := int64(r.Uint64N(uint64(2e15))) + 1e15
		s, e := w.Bounds(now)
		if !(s <= now && now < e) {
			t.Fatalf("%+v: Bounds(%d) = [%d, %d) does not hold now", w, now, s, e)
		}
		ps, pe := w.Bounds(s - 1)
		if pe != s || ps >= s {
			t.Fatalf("%+v: window before [%d,%d) is [%d,%d)", w, s, e, ps, pe)
		}
	}
}

func TestFixed(t *testing.T) {
	s := Spec{Kind: Fixed, Limit: 3}
	c := Clock{Now: 1_500_000, Start: 1_000_000, End: 2_000_000}
	tests := []struct {
		name    string
		count   int64
		hits    uint64
		applied bool
		want    Decision
	}{
		{"first", 0, 1, true, Decision{Allowed: true, Remaining: 2, Reset: 500_000}},
		{"last one", 2, 1, true, Decision{Allowed: true, Remaining: 0, Reset: 500_000}},
		{"over", 3, 1, false, Decision{Allowed: false, Remaining: 0, Reset: 500_000, RetryAfter: 500_000}},
		{"too many hits at once", 1, 3, false, Decision{Allowed: false, Remaining: 2, Reset: 500_000, RetryAfter: 500_000}},
		{"hits above the limit never fit", 0, 4, false, Decision{Allowed: false, Remaining: 3, Reset: 500_000, RetryAfter: -1}},
		{"check only", 3, 0, true, Decision{Allowed: true, Remaining: 0, Reset: 500_000}},
		{"counted refusal (envoy compat)", 3, 2, true, Decision{Allowed: false, Remaining: 0, Reset: 500_000, RetryAfter: 500_000}},
		{"refused by another limit of the group", 0, 1, false, Decision{Allowed: false, Remaining: 3, Reset: 500_000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := s.Decide(State{A: tt.count}, c, tt.hits, tt.applied)
			if got != tt.want {
				t.Errorf("Decide(count %d, hits %d) = %+v; want %+v", tt.count, tt.hits, got, tt.want)
			}
		})
	}
}

func TestSliding(t *testing.T) {
	s := Spec{Kind: Sliding, Limit: 10}
	// Window [0, 1s); now at 25% of it: the previous window weighs 75%.
	c := Clock{Now: 250_000, Start: 0, End: 1_000_000}
	tests := []struct {
		name       string
		prev, curr int64
		hits       uint64
		allowed    bool
		remaining  uint64
	}{
		{"empty", 0, 0, 1, true, 9},
		{"prev weighs 75%", 8, 3, 1, true, 0},       // 6 + 3 + 1 = 10
		{"prev weighs 75% over", 8, 4, 1, false, 0}, // 6 + 4 + 1 = 11
		{"full prev, fresh window: no double burst", 10, 2, 1, false, 0},
		{"remaining floors", 4, 0, 1, true, 6}, // 3 + 0 + 1 = 4 → 6 left
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := State{A: tt.prev, B: tt.curr}
			got := s.Decide(st, c, tt.hits, s.Allowed(st, c, tt.hits))
			if got.Allowed != tt.allowed || got.Remaining != tt.remaining {
				t.Errorf("Decide(prev %d, curr %d) = %+v; want allowed %v remaining %d", tt.prev, tt.curr, got, tt.allowed, tt.remaining)
			}
		})
	}
}

// TestSlidingRetryAfter checks that RetryAfter is the first time the same
// request fits: refused a microsecond before, admitted at it.
func TestSlidingRetryAfter(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 20000; i++ {
		lim := 1 + r.Uint64N(50)
		s := Spec{Kind: Sliding, Limit: lim}
		w := int64(1 + r.IntN(5_000_000))
		c := Clock{Start: 10 * w, End: 11 * w}
		c.Now = c.Start + r.Int64N(w)
		st := State{A: r.Int64N(int64(lim) + 1), B: r.Int64N(int64(lim) + 1)}
		hits := r.Uint64N(lim) + 1
		d := s.Decide(st, c, hits, false)
		if s.Allowed(st, c, hits) || d.RetryAfter <= 0 {
			continue
		}
		at := c.Now + d.RetryAfter
		stAt, cAt := st, c
		if at >= c.End { // the next window: this one becomes the previous
			stAt = State{A: st.B}
			cAt = Clock{Start: c.End, End: c.End + w}
		}
		cAt.Now = at
		if !s.Allowed(stAt, cAt, hits) {
			t.Fatalf("case %d: %+v %+v hits %d: not allowed at RetryAfter %d", i, st, c, hits, d.RetryAfter)
		}
		cAt.Now = at - 1
		if at-1 >= cAt.Start && at-1 > c.Now && s.Allowed(stAt, cAt, hits) && d.RetryAfter > 1 {
			t.Fatalf("case %d: %+v %+v hits %d: already allowed before RetryAfter %d", i, st, c, hits, d.RetryAfter)
		}
	}
}

func TestGCRA(t *testing.T) {
	// 10 per second, burst 5: a token every 100ms.
	s := NewGCRA(10, 5, 1_000_000)
	if s.Emission != 100_000 {
		t.Fatalf("Emission = %d; want 100000", s.Emission)
	}
	now := int64(1_000_000_000)
	st := State{}
	var admitted int
	for i := 0; i < 8; i++ {
		c := Clock{Now: now}
		ok := s.Allowed(st, c, 1)
		d := s.Decide(st, c, 1, ok)
		if ok {
			admitted++
			st = s.Apply(st, c, 1)
			if d.Remaining != uint64(5-admitted) {
				t.Errorf("request %d: Remaining = %d; want %d", i, d.Remaining, 5-admitted)
			}
		} else if d.RetryAfter != 100_000 {
			t.Errorf("request %d: RetryAfter = %d; want 100000", i, d.RetryAfter)
		}
	}
	if admitted != 5 {
		t.Fatalf("burst admitted %d at once; want 5", admitted)
	}
	// 100ms later one token is back, not two.
	c := Clock{Now: now + 100_000}
	if !s.Allowed(st, c, 1) {
		t.Fatalf("a token should be back after one emission interval")
	}
	st = s.Apply(st, c, 1)
	if s.Allowed(st, c, 1) {
		t.Fatalf("only one token should be back")
	}
	// Hits above the burst never fit.
	d := s.Decide(State{}, Clock{Now: now}, 6, false)
	if d.Allowed || d.RetryAfter != -1 {
		t.Errorf("hits above burst: %+v; want refused, RetryAfter -1", d)
	}
	// Emission rounds up: 3 per second never admits more than 3 a second.
	s3 := NewGCRA(3, 1, 1_000_000)
	if s3.Emission != 333_334 {
		t.Errorf("Emission = %d; want 333334", s3.Emission)
	}
}

// TestGCRANeverExceedsRate drives a GCRA bucket with random arrivals and
// checks that in any run it admits at most burst + elapsed/emission.
func TestGCRANeverExceedsRate(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for run := 0; run < 200; run++ {
		lim := 1 + r.Uint64N(100)
		burst := 1 + r.Uint64N(2*lim)
		s := NewGCRA(lim, burst, 1_000_000)
		st := State{}
		start := int64(5e15)
		now := start
		var admitted uint64
		for i := 0; i < 2000; i++ {
			now += r.Int64N(2 * s.Emission)
			hits := 1 + r.Uint64N(3)
			c := Clock{Now: now}
			if s.Allowed(st, c, hits) {
				st = s.Apply(st, c, hits)
				admitted += hits
			}
		}
		bound := burst + uint64((now-start)/s.Emission)
		if admitted > bound {
			t.Fatalf("run %d: admitted %d > burst %d + elapsed/emission = %d", run, admitted, burst, bound)
		}
	}
}

// TestFixedNeverExceedsLimit checks the exactness property the Redis store
// must keep across replicas: at most limit hits per window.
func TestFixedNeverExceedsLimit(t *testing.T) {
	for _, k := range []Kind{Fixed, Sliding} {
		s := Spec{Kind: k, Limit: 7}
		w := Window{Count: 1, Unit: Second}
		r := rand.New(rand.NewPCG(7, 8))
		counts := map[int64]int64{}
		now := int64(1e15)
		for i := 0; i < 10000; i++ {
			now += r.Int64N(20_000)
			st, e := w.Bounds(now)
			c := Clock{Now: now, Start: st, End: e}
			state := State{A: counts[st-1_000_000], B: counts[st]}
			if k == Fixed {
				state = State{A: counts[st]}
			}
			if s.Allowed(state, c, 1) {
				counts[st]++
			}
		}
		for st, n := range counts {
			if n > 7 {
				t.Fatalf("%v: window %d admitted %d > 7", k, st, n)
			}
		}
	}
}

// TestRefund: giving hits back never takes a counter below zero, takes
// from the current window first, and never fills a bucket beyond full.
func TestRefund(t *testing.T) {
	now := int64(1_000_000_000)
	c := Clock{Now: now, Start: now - 250_000, End: now + 750_000}
	gcra := NewGCRA(10, 5, 1_000_000) // a token every 100ms
	tests := []struct {
		name string
		spec Spec
		st   State
		hits uint64
		want State
	}{
		{"fixed", Spec{Kind: Fixed, Limit: 10}, State{A: 7}, 3, State{A: 4}},
		{"fixed floors at 0", Spec{Kind: Fixed, Limit: 10}, State{A: 2}, 5, State{A: 0}},
		{"fixed over the limit", Spec{Kind: Fixed, Limit: 10}, State{A: 14}, 3, State{A: 11}},
		{"fixed empty", Spec{Kind: Fixed, Limit: 10}, State{}, 3, State{}},
		{"sliding current first", Spec{Kind: Sliding, Limit: 10}, State{A: 6, B: 5}, 3, State{A: 6, B: 2}},
		{"sliding then previous", Spec{Kind: Sliding, Limit: 10}, State{A: 6, B: 2}, 5, State{A: 3, B: 0}},
		{"sliding floors at 0", Spec{Kind: Sliding, Limit: 10}, State{A: 1, B: 1}, 9, State{}},
		{"gcra gives tokens back", gcra, State{A: now + 300_000}, 2, State{A: now + 100_000}},
		{"gcra never beyond full", gcra, State{A: now + 300_000}, 9, State{A: now}},
		{"gcra already full", gcra, State{A: now - 5}, 1, State{A: now - 5}},
		{"zero hits", Spec{Kind: Fixed, Limit: 10}, State{A: 7}, 0, State{A: 7}},
	}
	for _, tt := range tests {
		if got := tt.spec.Refund(tt.st, c, tt.hits); got != tt.want {
			t.Errorf("%s: Refund(%+v, %d) = %+v; want %+v", tt.name, tt.st, tt.hits, got, tt.want)
		}
	}
	// Refunding what was admitted restores the room exactly.
	for _, s := range []Spec{{Kind: Fixed, Limit: 5}, {Kind: Sliding, Limit: 5}, gcra} {
		st := State{}
		for s.Allowed(st, c, 1) {
			st = s.Apply(st, c, 1)
		}
		st = s.Refund(st, c, 2)
		if !s.Allowed(st, c, 2) || s.Allowed(st, c, 3) {
			t.Errorf("%v: after refunding 2 of a full limit, room for 2 and not 3 expected (state %+v)", s.Kind, st)
		}
	}
}
