package budget

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"
)

// Memory is the in-process store of a single replica (`make run`, tests):
// the Go twin of reserve.lua and settle.lua, on the same key layout.
type Memory struct {
	now func() time.Time
	max int

	mu       sync.Mutex
	counters map[string]memCounter
	records  map[string]*memRecord
	open     map[string]map[string]int64 // open-set key -> id -> expiry (ms)
	sweptAt  time.Time
}

type memCounter struct {
	v       int64
	expires time.Time
}

type memRecord struct {
	st       byte // 'o' open, 'e' expired (reconciled), 's' settled
	amt, chg int64
	keys     []string
	refund   bool
	expires  time.Time
}

// MemoryOptions tune the in-process store.
type MemoryOptions struct {
	// MaxEntries bounds counters plus records; past it reservations fail
	// with ErrFull. Default 100,000.
	MaxEntries int
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// NewMemory makes an in-process store.
func NewMemory(o MemoryOptions) *Memory {
	if o.MaxEntries <= 0 {
		o.MaxEntries = 100_000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Memory{now: o.Now, max: o.MaxEntries, counters: map[string]memCounter{}, records: map[string]*memRecord{}, open: map[string]map[string]int64{}}
}

// Ping implements Store.
func (m *Memory) Ping(context.Context) error { return nil }

func (m *Memory) get(k string, now time.Time) (int64, bool) {
	c, ok := m.counters[k]
	if !ok || !now.Before(c.expires) {
		delete(m.counters, k)
		return 0, false
	}
	return c.v, true
}

func (m *Memory) record(k string, now time.Time) *memRecord {
	r := m.records[k]
	if r != nil && !now.Before(r.expires) {
		delete(m.records, k)
		return nil
	}
	return r
}

// apply is the scripts' apply: delta to the record's counters that still
// exist, none below zero.
func (m *Memory) apply(r *memRecord, delta int64, now time.Time) {
	if delta == 0 {
		return
	}
	for _, k := range r.keys {
		v, ok := m.get(k, now)
		if !ok {
			continue
		}
		c := m.counters[k]
		c.v = max(0, v+delta)
		m.counters[k] = c
	}
}

// sweep drops what has expired, at most once a second.
func (m *Memory) sweep(now time.Time) {
	if now.Sub(m.sweptAt) < time.Second && len(m.counters)+len(m.records) < m.max {
		return
	}
	m.sweptAt = now
	for k, c := range m.counters {
		if !now.Before(c.expires) {
			delete(m.counters, k)
		}
	}
	for k, r := range m.records {
		if !now.Before(r.expires) {
			delete(m.records, k)
		}
	}
	for k, set := range m.open {
		if len(set) == 0 {
			delete(m.open, k)
		}
	}
}

// Reserve implements Store.
func (m *Memory) Reserve(_ context.Context, r *Reservation) (Outcome, error) {
	if err := r.validate(); err != nil {
		return Outcome{}, err
	}
	now := m.now()
	nowMS := now.UnixMilli()
	k := keysOf("", r.Key)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweep(now)
	var out Outcome
	// 1. Reconcile expired reservations of the key, oldest first.
	if set := m.open[k.open()]; len(set) > 0 {
		for _, id := range expiredIDs(set, nowMS) {
			if rec := m.record(k.reservation(id), now); rec != nil && rec.st == 'o' {
				nc := rec.amt
				if rec.refund {
					nc = 0
				}
				m.apply(rec, nc-rec.chg, now)
				rec.st, rec.chg = 'e', nc
				out.Expired++
			}
			delete(set, id)
		}
	}
	// 2. Reserve in every window or none.
	amt := int64(r.Amount)
	out.Windows = make([]Window, len(r.Limits))
	ckeys := make([]string, len(r.Limits))
	ttls := make([]int64, len(r.Limits))
	ok := true
	for i, l := range r.Limits {
		key, end, ttl := windowOf(k, l, now, r.Hold)
		ckeys[i], ttls[i] = key, ttl
		u, _ := m.get(key, now)
		out.Windows[i] = Window{Used: uint64(u), Reset: end}
		if u+amt > int64(l.Amount) || u >= int64(l.Amount) {
			ok = false
		}
	}
	if !ok {
		return out, nil
	}
	rk := k.reservation(r.ID)
	if m.record(rk, now) != nil {
		return Outcome{}, errIDInUse
	}
	if len(m.counters)+len(m.records)+len(ckeys)+1 > m.max {
		return Outcome{}, ErrFull
	}
	for i, key := range ckeys {
		c, exists := m.counters[key]
		if !exists {
			if amt == 0 {
				continue // as the script: a reservation of 0 makes no counter
			}
			c = memCounter{expires: now.Add(time.Duration(ttls[i]) * time.Millisecond)}
		}
		c.v += amt
		m.counters[key] = c
		out.Windows[i].Used = uint64(c.v)
	}
	out.Admitted = true
	m.records[rk] = &memRecord{st: 'o', amt: amt, chg: amt, keys: ckeys, refund: r.OnExpiry == ExpireRefund, expires: now.Add(recordTTL(r.Hold))}
	set := m.open[k.open()]
	if set == nil {
		set = map[string]int64{}
		m.open[k.open()] = set
	}
	set[r.ID] = nowMS + r.Hold.Milliseconds()
	return out, nil
}

// Settle implements Store.
func (m *Memory) Settle(_ context.Context, s *Settlement) (SettleOutcome, error) {
	if err := s.validate(); err != nil {
		return SettleOutcome{}, err
	}
	now := m.now()
	k := keysOf("", s.Key)
	m.mu.Lock()
	defer m.mu.Unlock()
	rec := m.record(k.reservation(s.ID), now)
	if rec == nil {
		return SettleOutcome{Status: Unknown}, nil
	}
	if rec.st == 's' {
		return SettleOutcome{Status: Duplicate, Reserved: uint64(rec.amt)}, nil
	}
	st := Settled
	if rec.st == 'e' {
		st = Late
	}
	delta := int64(s.Actual) - rec.chg
	m.apply(rec, delta, now)
	rec.st, rec.chg = 's', int64(s.Actual)
	rec.expires = now.Add(s.keep())
	if set := m.open[k.open()]; set != nil {
		delete(set, s.ID)
	}
	return SettleOutcome{Status: st, Reserved: uint64(rec.amt), Delta: delta}, nil
}

// expiredIDs are the ids of set expired at now, earliest expiry first
// (ties by id), at most maxReconcile: ZRANGEBYSCORE's order.
func expiredIDs(set map[string]int64, now int64) []string {
	n := maxReconcile
	type e struct {
		id string
		at int64
	}
	var es []e
	for id, at := range set {
		if at <= now {
			es = append(es, e{id, at})
		}
	}
	slices.SortFunc(es, func(a, b e) int {
		if a.at != b.at {
			return cmp.Compare(a.at, b.at)
		}
		return cmp.Compare(a.id, b.id)
	})
	out := make([]string, 0, min(n, len(es)))
	for i := 0; i < len(es) && i < n; i++ {
		out = append(out, es[i].id)
	}
	return out
}

// Peek implements Store.
func (m *Memory) Peek(_ context.Context, key string, limits []Limit) ([]Window, error) {
	now := m.now()
	k := keysOf("", key)
	m.mu.Lock()
	defer m.mu.Unlock()
	ws := make([]Window, len(limits))
	for i, l := range limits {
		var ck string
		ck, ws[i].Reset, _ = windowOf(k, l, now, 0)
		v, _ := m.get(ck, now)
		ws[i].Used = uint64(max(0, v))
	}
	return ws, nil
}
