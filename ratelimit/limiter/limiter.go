// Package limiter decides RLS requests: it reads each descriptor, finds
// its rule in the compiled quotas, asks the store (or the local over-limit
// cache) and answers with per-descriptor statuses and the headers the
// client sees. It is the decision logic of the rate limit service; the
// gRPC transport is ratelimit/server.go.
package limiter

import (
	"context"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/kv"
	"github.com/gatehouse/gatehouse/ratelimit/algo"
	"github.com/gatehouse/gatehouse/ratelimit/quota"
	"github.com/gatehouse/gatehouse/ratelimit/store"
)

// Settings are the answers' knobs that come from config.
type Settings struct {
	Headers config.RateLimitHeaders
	// Request bounds; a request beyond them is InvalidArgument.
	MaxDescriptors int
	MaxEntries     int
	MaxValueBytes  int
	MaxHits        uint64
	// DegradedRetryAfter is the Retry-After of a fail-closed answer.
	DegradedRetryAfter time.Duration
	// LocalCacheEntries bounds the local over-limit cache (0: off).
	LocalCacheEntries int
}

// SettingsFrom reads the settings of the ratelimit section.
func SettingsFrom(rl *config.RateLimit) Settings {
	return Settings{
		Headers:            rl.ResponseHeaders,
		MaxDescriptors:     rl.Requests.MaxDescriptors,
		MaxEntries:         rl.Requests.MaxEntries,
		MaxValueBytes:      int(rl.Requests.MaxValueBytes),
		MaxHits:            rl.Requests.MaxHits,
		DegradedRetryAfter: rl.Store.Breaker.OpenFor.D(),
		LocalCacheEntries:  rl.LocalCache.MaxEntries,
	}
}

// Limiter answers ShouldRateLimit. It is safe for concurrent use; Swap
// replaces its config without disturbing requests in flight.
type Limiter struct {
	state atomic.Pointer[state]
	// cache is the local over-limit cache of the first config.
	cache     *store.OverLimitCache
	m         *Metrics
	log       *slog.Logger
	keyPrefix string
	// Now is the clock (Unix µs); tests replace it.
	Now func() int64

	degradedLog throttle
	shadowLog   throttle
	unknownLog  throttle
}

type state struct {
	snap     *quota.Snapshot
	store    store.Store
	settings Settings
	rules    []*ruleMetrics
	domains  map[string]*domainMetrics
	detailed []*detailed // by rule index; nil for rules without detailed_metric
	cache    *store.OverLimitCache
}

// New returns a limiter; Swap gives it its first config.
func New(log *slog.Logger, m *Metrics, cache *store.OverLimitCache, keyPrefix string) *Limiter {
	return &Limiter{
		cache:     cache,
		m:         m,
		log:       log,
		keyPrefix: keyPrefix + kv.NamespaceRateLimit,
		Now:       func() int64 { return time.Now().UnixMicro() },
	}
}

// Swap serves snap with st from now on and returns the store it replaces
// (nil the first time). The config gets a new, empty local over-limit
// cache of s.LocalCacheEntries (0: none): the limits the old entries were
// computed for may have changed, and requests still deciding on the old
// config add to the old cache, not to this one.
func (l *Limiter) Swap(snap *quota.Snapshot, st store.Store, s Settings) store.Store {
	var prevSnap *quota.Snapshot
	prev := l.state.Load()
	cache := l.cache
	if prev != nil {
		prevSnap = prev.snap
		cache = store.NewOverLimitCache(s.LocalCacheEntries)
	}
	rules, doms := l.m.bind(snap, prevSnap)
	var prevDetailed []*detailed
	if prev != nil {
		prevDetailed = prev.detailed
	}
	dts := l.m.bindDetailed(snap, prevSnap, prevDetailed)
	l.state.Store(&state{snap: snap, store: st, settings: s, rules: rules, domains: doms, detailed: dts, cache: cache})
	if prev == nil {
		return nil
	}
	return prev.store
}

// Snapshot returns the quotas being served.
func (l *Limiter) Snapshot() *quota.Snapshot {
	if s := l.state.Load(); s != nil {
		return s.snap
	}
	return nil
}

// Store returns the store being used.
func (l *Limiter) Store() store.Store {
	if s := l.state.Load(); s != nil {
		return s.store
	}
	return nil
}

// request is the scratch of one ShouldRateLimit, pooled.
type request struct {
	descs   []descState
	ops     []*store.Op
	opsBuf  []store.Op
	limits  []store.LimitOp
	keyBuf  []byte
	refs    []keyRef
	replace map[string]bool
}

// keyRef locates a limit's keys in the request's key buffer.
type keyRef struct{ key, prev [2]int }

// descState is what is known of one descriptor while deciding.
type descState struct {
	rule     *quota.Rule
	rm       *ruleMetrics
	hits     uint64
	op       *store.Op
	identity [2]int // identity bytes in keyBuf
	// blockedUntil is set when the local cache refused the descriptor.
	blockedUntil int64
	blockedLimit *quota.Limit
	skip         bool // replaced by another rule
	override     bool
}

var requestPool = sync.Pool{New: func() any { return &request{replace: map[string]bool{}} }}

// ShouldRateLimit decides one request. Bad input is a gRPC
// InvalidArgument error with a message; the store's failures are answered
// by each rule's failure mode and are never errors.
func (l *Limiter) ShouldRateLimit(ctx context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	st := l.state.Load()
	if st == nil {
		return nil, status.Error(codes.Unavailable, "ratelimit: no config loaded yet")
	}
	if err := l.check(st, req); err != nil {
		return nil, err
	}
	dom, ok := st.snap.Domain(req.GetDomain())
	if !ok {
		l.m.invalid.WithLabelValues("unknown_domain").Inc()
		return nil, status.Errorf(codes.InvalidArgument, "ratelimit: unknown domain %q", truncate(req.GetDomain(), 128))
	}
	dm := st.domains[dom.Name]
	now := l.Now()

	r := requestPool.Get().(*request)
	defer r.release()
	r.descs = grow(r.descs, len(req.GetDescriptors()))

	if err := l.match(st, dom, dm, req, r); err != nil {
		return nil, err
	}
	l.prepare(st, r, now)
	var storeErr error
	if len(r.ops) > 0 {
		storeErr = st.store.Eval(ctx, r.ops)
	}
	resp := l.answer(st, dom, r, now, storeErr)
	if resp.OverallCode == rlsv3.RateLimitResponse_OK {
		dm.requests[0].Inc()
	} else {
		dm.requests[1].Inc()
	}
	return resp, nil
}

// match finds each descriptor's rule and identity (1st phase).
func (l *Limiter) match(st *state, dom *quota.Domain, dm *domainMetrics, req *rlsv3.RateLimitRequest, r *request) error {
	descs := req.GetDescriptors()
	for i, d := range descs {
		ds := &r.descs[i]
		*ds = descState{hits: hitsOf(req, d)}
		if d.GetLimit() != nil && !dom.IsNative() {
			lim, ok := quota.OverrideLimit(d.GetLimit())
			if !ok {
				l.m.invalid.WithLabelValues("bad_override").Inc()
				return status.Errorf(codes.InvalidArgument, "ratelimit: descriptors[%d].limit has no valid unit (%v)", i, d.GetLimit().GetUnit())
			}
			ds.rule = &quota.Rule{ID: dom.Name + ":override", Domain: dom.Name, Limits: []*quota.Limit{lim}, FailOpen: dom.FailOpen, Shadow: dom.Shadow, CountRefused: true, Policy: lim.Policy}
			ds.rm = dm.override
			ds.override = true
			start := len(r.keyBuf)
			r.keyBuf = quota.EnvoyIdentity(r.keyBuf, dom.Name, d.GetEntries(), nil)
			ds.identity = [2]int{start, len(r.keyBuf)}
			continue
		}
		start := len(r.keyBuf)
		rule, kb, miss, err := dom.Match(d, r.keyBuf)
		r.keyBuf = kb
		if err != nil {
			l.m.invalid.WithLabelValues("bad_descriptor").Inc()
			return status.Errorf(codes.InvalidArgument, "ratelimit: descriptors[%d]: %v", i, err)
		}
		if rule == nil {
			dm.unmatched[miss].Inc()
			if miss == quota.UnknownRoute {
				l.unknownLog.log(l.log, slog.LevelWarn, "rate limit descriptor names a route the config does not have; answering OK", "domain", dom.Name)
			}
			continue
		}
		ds.rule, ds.identity = rule, [2]int{start, len(r.keyBuf)}
		ds.rm = st.rules[rule.Index]
		if rule.DetailedMetric {
			ds.rm = l.detailedMetrics(st, rule, d)
		}
		for _, name := range rule.Replaces {
			r.replace[name] = true
		}
	}
	if len(r.replace) > 0 {
		for i := range r.descs {
			ds := &r.descs[i]
			// As the reference: an unlimited rule stays unlimited even when
			// another rule replaces its name.
			if ds.rule != nil && !ds.rule.Unlimited && ds.rule.Name != "" && r.replace[ds.rule.Name] {
				ds.skip = true
			}
		}
	}

	return nil
}

// prepare builds the store ops of the limited descriptors; the local cache
// answers those it knows refuse (2nd phase).
func (l *Limiter) prepare(st *state, r *request, now int64) {
	nLimits := 0
	for i := range r.descs {
		if ds := &r.descs[i]; ds.rule != nil && !ds.skip && !ds.rule.Unlimited {
			nLimits += len(ds.rule.Limits)
		}
	}
	r.limits = growLimits(r.limits, nLimits)
	r.opsBuf = growOps(r.opsBuf, len(r.descs))
	// Keys are built into one buffer and converted to one string, then
	// sliced: one allocation for all keys of the request.
	r.refs = grow(r.refs, nLimits)
	refs := r.refs
	kb := r.keyBuf
	li := 0
	for i := range r.descs {
		ds := &r.descs[i]
		if ds.rule == nil || ds.skip || ds.rule.Unlimited {
			continue
		}
		ident := r.keyBuf[ds.identity[0]:ds.identity[1]]
		for _, lim := range ds.rule.Limits {
			c, prevStart, nextEnd := lim.Clock(now)
			s := len(kb)
			kb = l.appendKey(kb, ident, lim, c.Start, lim.Spec.Kind != algo.GCRA)
			refs[li] = keyRef{key: [2]int{s, len(kb)}}
			if lim.Spec.Kind == algo.Sliding {
				s := len(kb)
				kb = l.appendKey(kb, ident, lim, prevStart, true)
				refs[li].prev = [2]int{s, len(kb)}
			}
			r.limits[li] = store.LimitOp{Spec: &lim.Spec, Clock: c, TTL: ttlOf(lim, c, nextEnd)}
			li++
		}
	}
	r.keyBuf = kb
	keys := string(kb)
	li = 0
	for i := range r.descs {
		ds := &r.descs[i]
		if ds.rule == nil || ds.skip || ds.rule.Unlimited {
			continue
		}
		n := len(ds.rule.Limits)
		lops := r.limits[li : li+n : li+n]
		for j := range lops {
			ref := refs[li+j]
			lops[j].Key = keys[ref.key[0]:ref.key[1]]
			if ref.prev[1] > 0 {
				lops[j].PrevKey = keys[ref.prev[0]:ref.prev[1]]
			}
			if ds.hits > 0 {
				if u := st.cache.Until(lops[j].Key, now); u > 0 && (ds.blockedUntil == 0 || u > ds.blockedUntil) {
					ds.blockedUntil, ds.blockedLimit = u, ds.rule.Limits[j]
				}
			}
		}
		li += n
		if ds.blockedUntil > 0 {
			continue
		}
		op := &r.opsBuf[i]
		*op = store.Op{Hits: ds.hits, CountRefused: ds.rule.CountRefused, Limits: lops}
		ds.op = op
		r.ops = append(r.ops, op)
	}

}

// answer turns the outcomes into the response (3rd phase).
func (l *Limiter) answer(st *state, dom *quota.Domain, r *request, now int64, storeErr error) *rlsv3.RateLimitResponse {
	ab := newAnswer(len(r.descs))
	resp := &ab.resp
	resp.OverallCode = rlsv3.RateLimitResponse_OK
	var hdr headerPick
	for i := range r.descs {
		ds := &r.descs[i]
		s := resp.Statuses[i]
		s.Code = rlsv3.RateLimitResponse_OK
		rule := ds.rule
		if rule == nil || ds.skip {
			continue
		}
		ds.rm.hits.Add(float64(ds.hits))
		if rule.Unlimited {
			s.LimitRemaining = math.MaxUint32
			ds.rm.decisions[DecisionUnlimited].Inc()
			continue
		}
		var dec Decision
		var pick limitOutcome
		switch {
		case ds.blockedUntil > 0:
			dec = DecisionOverLimitLocal
			pick = limitOutcome{lim: ds.blockedLimit, d: algo.Decision{Reset: ds.blockedUntil - now, RetryAfter: ds.blockedUntil - now}}
		case storeErr != nil:
			if rule.FailOpen {
				dec = DecisionDegradedOpen
			} else {
				dec = DecisionDegradedClosed
			}
		default:
			dec, pick = l.outcome(st.cache, ds, now)
		}
		if dec == DecisionDegradedOpen || dec == DecisionDegradedClosed {
			// Metered and logged as degraded whatever the rule's mode: a
			// shadow or quota-mode rule answers OK, but nothing was decided.
			ds.rm.decisions[dec].Inc()
			l.degradedLog.log(l.log, slog.LevelWarn, "rate limit store unavailable; answering by the failure mode", "domain", dom.Name, "rule", rule.ID, "decision", dec.String(), "err", storeErr.Error())
			if dec == DecisionDegradedClosed && !rule.Shadow && !rule.QuotaMode {
				s.Code = rlsv3.RateLimitResponse_OVER_LIMIT
				resp.OverallCode = rlsv3.RateLimitResponse_OVER_LIMIT
				hdr.degraded = true
			}
			continue
		}
		over := dec == DecisionOverLimit || dec == DecisionOverLimitLocal
		if over && rule.QuotaMode {
			dec, over = DecisionQuotaMode, false
		} else if over && rule.Shadow {
			l.shadowLog.log(l.log, slog.LevelInfo, "shadow rate limit would refuse; answered OK", "domain", dom.Name, "rule", rule.ID, "decision", dec.String())
			dec, over = DecisionShadow, false
		}
		ds.rm.decisions[dec].Inc()
		if pick.lim != nil {
			s.CurrentLimit = pick.lim.Proto
			s.LimitRemaining = clampU32(pick.d.Remaining)
			s.DurationUntilReset = ab.duration(i, pick.d.Reset)
			hdr.consider(rule, pick, over)
		}
		if over {
			s.Code = rlsv3.RateLimitResponse_OVER_LIMIT
			resp.OverallCode = rlsv3.RateLimitResponse_OVER_LIMIT
		}
	}
	resp.ResponseHeadersToAdd = hdr.headers(st.settings, ab)
	return resp
}

// limitOutcome is one limit's decision, to report.
type limitOutcome struct {
	lim *quota.Limit
	d   algo.Decision
}

// outcome decides a descriptor the store evaluated: over if the op was not
// applied or a limit refuses (counted refusals). The limit reported is a
// refusing one (the latest to free up), else the one with least remaining.
// Limits that now refuse any hit are remembered in the local cache.
func (l *Limiter) outcome(cache *store.OverLimitCache, ds *descState, now int64) (Decision, limitOutcome) {
	op := ds.op
	var pick limitOutcome
	pickRefused := false
	over := !op.Applied
	for j := range op.Limits {
		lo := &op.Limits[j]
		lim := ds.rule.Limits[j]
		d := lo.Spec.Decide(lo.State, lo.Clock, ds.hits, op.Applied)
		refused := !lo.Spec.Allowed(lo.State, lo.Clock, ds.hits)
		over = over || refused
		switch {
		case pick.lim == nil, refused && !pickRefused:
			pick, pickRefused = limitOutcome{lim, d}, refused
		case refused && pick.d.RetryAfter >= 0 && (d.RetryAfter < 0 || d.RetryAfter > pick.d.RetryAfter):
			pick = limitOutcome{lim, d}
		case !refused && !pickRefused && d.Remaining < pick.d.Remaining:
			pick = limitOutcome{lim, d}
		}
		if refused || d.Remaining == 0 {
			remember(cache, lo, ds.hits, op.Applied, now)
		}
	}
	if over {
		pick.d.Allowed = false
		return DecisionOverLimit, pick
	}
	return DecisionOK, pick
}

// remember puts a key in the local cache when no request of even one hit
// fits it until a known time.
func remember(cache *store.OverLimitCache, lo *store.LimitOp, hits uint64, applied bool, now int64) {
	if cache == nil {
		return
	}
	st := lo.State
	if applied {
		st = lo.Spec.Apply(st, lo.Clock, hits)
	}
	one := lo.Spec.Decide(st, lo.Clock, 1, false)
	if lo.Spec.Allowed(st, lo.Clock, 1) || one.RetryAfter <= 0 {
		return
	}
	cache.Add(lo.Key, now+one.RetryAfter, now)
}

func (l *Limiter) appendKey(kb, ident []byte, lim *quota.Limit, start int64, windowed bool) []byte {
	kb = append(kb, l.keyPrefix...)
	kb = append(kb, '{')
	kb = append(kb, ident...)
	kb = append(kb, "}:"...)
	kb = append(kb, lim.Tag...)
	if windowed {
		kb = append(kb, ':')
		kb = strconv.AppendInt(kb, start/1e6, 10)
	}
	return kb
}

// ttlOf is how long a counter written now must live (ms): to the end of
// its window, and for a sliding window through the next one (where it is
// the previous window), plus a second for clock skew between replicas.
func ttlOf(lim *quota.Limit, c algo.Clock, nextEnd int64) int64 {
	switch lim.Spec.Kind {
	case algo.GCRA:
		return 0 // set by the store from the bucket's arrival time
	case algo.Sliding:
		return (nextEnd-c.Now)/1000 + 1000
	}
	return (c.End-c.Now)/1000 + 1000
}

func (l *Limiter) detailedMetrics(st *state, rule *quota.Rule, d *ratelimitv3.RateLimitDescriptor) *ruleMetrics {
	id := rule.Domain
	for _, e := range d.GetEntries() {
		id += "." + e.GetKey() + "_" + e.GetValue()
	}
	dt := st.detailed[rule.Index]
	dt.mu.Lock()
	defer dt.mu.Unlock()
	if rm, ok := dt.seen[id]; ok {
		return rm
	}
	if dt.seen == nil {
		dt.seen = map[string]*ruleMetrics{}
	}
	if len(dt.seen) >= maxDetailed {
		id = rule.ID + ":other"
		if rm, ok := dt.seen[id]; ok {
			return rm
		}
	}
	rm := l.m.rule(rule.Domain, truncate(id, maxDetailedLabel))
	dt.seen[id] = rm
	return rm
}

func (r *request) release() {
	for i := range r.opsBuf {
		r.opsBuf[i] = store.Op{}
	}
	for i := range r.limits {
		r.limits[i] = store.LimitOp{}
	}
	for i := range r.descs {
		r.descs[i] = descState{}
	}
	r.ops = r.ops[:0]
	r.keyBuf = r.keyBuf[:0]
	clear(r.replace)
	if cap(r.keyBuf) > 64<<10 || cap(r.descs) > 256 {
		return // do not keep what one huge request grew
	}
	requestPool.Put(r)
}

func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

func growLimits(s []store.LimitOp, n int) []store.LimitOp { return grow(s, n) }
func growOps(s []store.Op, n int) []store.Op              { return grow(s, n) }

func clampU32(v uint64) uint32 {
	if v > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(v)
}

// truncate cuts s to at most n bytes at a rune boundary: a metric label
// must be valid UTF-8 (prometheus panics on one that is not).
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
