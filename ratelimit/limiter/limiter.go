// Package limiter decides RLS requests: it reads each descriptor, finds
// its rule in the compiled quotas, asks the store (or the local over-limit
// cache) and answers with per-descriptor statuses and the headers the
// client sees. It is the decision logic of the rate limit service; the
// gRPC transport is ratelimit/server.go.
package limiter

import (
	"context"
	"errors"
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
	// CacheMaxAge bounds how long a key is answered from the local cache
	// (µs); 0 caches a key as long as its entry stays exact (reference
	// mode, where nothing but the key's own requests changes a counter).
	CacheMaxAge int64
	// NearLimitRatio splits within_limit from near_limit in the
	// reference's per-rule counters (float32, as the reference's).
	NearLimitRatio float32
	// Reference is the reference-compatible mode; nil in gatehouse's own.
	Reference *Reference
}

// SettingsFrom reads the settings of the ratelimit section.
func SettingsFrom(rl *config.RateLimit) Settings {
	s := Settings{
		Headers:            rl.ResponseHeaders,
		MaxDescriptors:     rl.Requests.MaxDescriptors,
		MaxEntries:         rl.Requests.MaxEntries,
		MaxValueBytes:      int(rl.Requests.MaxValueBytes),
		MaxHits:            rl.Requests.MaxHits,
		DegradedRetryAfter: rl.Store.Breaker.OpenFor.D(),
		LocalCacheEntries:  rl.LocalCache.MaxEntries,
		CacheMaxAge:        rl.LocalCache.MaxAge.D().Microseconds(),
		NearLimitRatio:     0.8,
		Reference:          referenceFrom(rl.Reference),
	}
	if rl.Reference != nil {
		// Refunds are charged in reference mode (as the pinned reference,
		// which does not know is_negative_hits): counters only grow, and an
		// entry stays exact until its window ends.
		s.CacheMaxAge = 0
		s.NearLimitRatio = float32(rl.Reference.NearLimitRatio)
	}
	return s
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
	// refPrefix prefixes the reference's own keys (reference mode): the
	// reference has no "rl:" part, only CACHE_KEY_PREFIX.
	refPrefix string
	// Now is the clock (Unix µs); tests replace it.
	Now func() int64

	degradedLog   throttle
	shadowLog     throttle
	unknownLog    throttle
	unknownDomLog throttle
	negativeLog   throttle
}

type state struct {
	snap     *quota.Snapshot
	store    store.Store
	settings Settings
	rules    []*ruleMetrics
	domains  map[string]*domainMetrics
	detailed []*detailed // by rule index; nil for rules without detailed_metric
	cache    *store.OverLimitCache
	// ref are the reference-named counters of envoy rules, by rule index
	// (nil for gatehouse's own), refOverride those of each envoy domain's
	// limit overrides.
	ref         []*refRule
	refOverride map[string]*refRule
}

// New returns a limiter; Swap gives it its first config. keyPrefix is
// redis.keyPrefix.
func New(log *slog.Logger, m *Metrics, cache *store.OverLimitCache, keyPrefix string) *Limiter {
	return &Limiter{
		cache:     cache,
		m:         m,
		log:       log,
		keyPrefix: keyPrefix + kv.NamespaceRateLimit,
		refPrefix: keyPrefix,
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
	var prevDetailed []*detailed
	var prevRef []*refRule
	var prevOverride map[string]*refRule
	prev := l.state.Load()
	cache := l.cache
	if prev != nil {
		prevSnap, prevDetailed, prevRef, prevOverride = prev.snap, prev.detailed, prev.ref, prev.refOverride
		cache = store.NewOverLimitCache(s.LocalCacheEntries)
	}
	rules, doms := l.m.bind(snap, prevSnap)
	dts := l.m.bindDetailed(snap, prevSnap, prevDetailed)
	ref, refOverride := l.m.ref.bind(snap, prevSnap, prevRef, prevOverride)
	l.state.Store(&state{snap: snap, store: st, settings: s, rules: rules, domains: doms, detailed: dts, cache: cache, ref: ref, refOverride: refOverride})
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

// ConfigLoaded counts a rate limit config applied or rejected in the
// reference's config_load_success / config_load_error counters.
func (l *Limiter) ConfigLoaded(ok bool) {
	if ok {
		l.m.ref.configLoadSuccess.Add(1)
	} else {
		l.m.ref.configLoadError.Add(1)
	}
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
	rule *quota.Rule
	rm   *ruleMetrics
	// rr are the reference-named counters of an envoy rule.
	rr     *refRule
	hits   uint64
	refund bool
	op     *store.Op
	// limits are the rule's limits with their keys and clocks.
	limits   []store.LimitOp
	identity [2]int // identity bytes in keyBuf
	// cached is set when the local cache answers the descriptor.
	cached   *store.CacheEntry
	skip     bool // replaced by another rule
	override bool
}

var requestPool = sync.Pool{New: func() any { return &request{replace: map[string]bool{}} }}

// ShouldRateLimit decides one request. Bad input is a gRPC
// InvalidArgument error with a message; the store's failures are answered
// by each rule's failure mode and are never errors (in reference mode the
// envoy config domains answer them with Unavailable, as the reference
// answers an error, and Envoy's failure_mode_deny decides).
func (l *Limiter) ShouldRateLimit(ctx context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	a, err := l.Decide(ctx, req)
	if err != nil {
		return nil, err
	}
	return a.Response(), nil
}

// Decide is ShouldRateLimit with the answer's memory pooled: the caller
// releases the answer once its response is written.
func (l *Limiter) Decide(ctx context.Context, req *rlsv3.RateLimitRequest) (*Answer, error) {
	st := l.state.Load()
	if st == nil {
		return nil, status.Error(codes.Unavailable, "ratelimit: no config loaded yet")
	}
	if err := l.check(st, req); err != nil {
		return nil, err
	}
	dom, ok := st.snap.Domain(req.GetDomain())
	if !ok {
		return (*Answer)(l.unknownDomain(st, req)), nil
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
	if storeErr != nil && st.settings.Reference != nil && !dom.IsNative() {
		return nil, l.referenceStoreError(dom, req, r, storeErr)
	}
	ab := l.answer(st, dom, req, r, now, storeErr)
	if ab.resp.OverallCode == rlsv3.RateLimitResponse_OK {
		dm.requests[0].Inc()
	} else {
		dm.requests[1].Inc()
	}
	return (*Answer)(ab), nil
}

// unknownDomain answers a request for a domain no config declares as the
// reference does: OK, nothing limits it. With Envoy's failure_mode_deny an
// error would refuse every request of the domain; a typo in Envoy's domain
// is made visible instead by a warning (at most one a second), a metric,
// and `gatehouse validate`, which checks the domains xDS renders.
func (l *Limiter) unknownDomain(st *state, req *rlsv3.RateLimitRequest) *answer {
	l.m.unknownDomain(req.GetDomain()).Inc()
	l.unknownDomLog.log(l.log, slog.LevelWarn, "rate limit request for a domain no config declares; answering OK, nothing limits it", "domain", truncate(req.GetDomain(), 128))
	ab := newAnswer(len(req.GetDescriptors()))
	ab.resp.OverallCode = rlsv3.RateLimitResponse_OK
	for _, s := range ab.resp.Statuses {
		s.Code = rlsv3.RateLimitResponse_OK
	}
	if ref := st.settings.Reference; ref != nil && ref.DynamicMetadata {
		ab.resp.DynamicMetadata = refMetadata(req, nil, false)
	}
	return ab
}

// referenceStoreError is the reference mode's answer when the store
// fails: an error, as the reference's (Envoy's failure_mode_deny then
// decides), with the reference's counters.
func (l *Limiter) referenceStoreError(dom *quota.Domain, req *rlsv3.RateLimitRequest, r *request, err error) error {
	l.m.ref.redisError.Add(1)
	for i := range r.descs {
		ds := &r.descs[i]
		if ds.rule == nil || ds.skip || ds.rule.Unlimited {
			continue
		}
		ds.rm.count(DecisionDegradedError)
		if ds.rr != nil {
			l.refSeries(dom, ds, req.GetDescriptors()[i]).totalHits.Add(ds.hits)
		}
	}
	l.degradedLog.log(l.log, slog.LevelWarn, "rate limit store unavailable; answering with an error, as the reference does (Envoy's failure_mode_deny decides)", "domain", dom.Name, "err", err.Error())
	return status.Errorf(codes.Unavailable, "ratelimit: %v", err)
}

// match finds each descriptor's rule and identity (1st phase).
func (l *Limiter) match(st *state, dom *quota.Domain, dm *domainMetrics, req *rlsv3.RateLimitRequest, r *request) error {
	ref := st.settings.Reference
	descs := req.GetDescriptors()
	for i, d := range descs {
		ds := &r.descs[i]
		*ds = descState{hits: hitsOf(req, d)}
		if d.GetIsNegativeHits() && ds.hits > 0 {
			if ref == nil {
				ds.refund = true
			} else {
				// The pinned reference predates is_negative_hits: the field
				// is unknown to it and the hits are charged. A drop-in
				// answers the same; say so.
				l.m.negativeCharged.Inc()
				l.negativeLog.log(l.log, slog.LevelWarn, "is_negative_hits is charged as ordinary hits in reference mode, as the pinned envoyproxy/ratelimit does", "domain", dom.Name)
			}
		}
		if d.GetLimit() != nil && !dom.IsNative() {
			lim, ok := quota.OverrideLimit(d.GetLimit())
			if !ok {
				l.m.invalid.WithLabelValues("bad_override").Inc()
				return status.Errorf(codes.InvalidArgument, "ratelimit: descriptors[%d].limit has no valid unit (%v)", i, d.GetLimit().GetUnit())
			}
			// As the reference, an override is never in shadow mode in
			// reference mode (its global shadow mode acts on the overall
			// code only).
			ds.rule = &quota.Rule{Index: -1, ID: dom.Name + ":override", Domain: dom.Name, Limits: []*quota.Limit{lim}, FailOpen: dom.FailOpen, Shadow: dom.Shadow && ref == nil, CountRefused: true, Policy: lim.Policy, RefKeys: dom.RefKeys()}
			ds.rm = dm.override
			ds.rr = st.refOverride[dom.Name]
			ds.override = true
			start := len(r.keyBuf)
			if dom.RefKeys() {
				r.keyBuf = quota.ReferenceIdentity(r.keyBuf, dom.Name, d.GetEntries(), nil)
			} else {
				r.keyBuf = quota.EnvoyIdentity(r.keyBuf, dom.Name, d.GetEntries(), nil)
			}
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
		ds.rr = st.ref[rule.Index]
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
// answers those its entries refuse (2nd phase).
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
			kb = l.appendKey(kb, ident, ds.rule, lim, c.Start)
			refs[li] = keyRef{key: [2]int{s, len(kb)}}
			if lim.Spec.Kind == algo.Sliding {
				s := len(kb)
				kb = l.appendKey(kb, ident, ds.rule, lim, prevStart)
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
		}
		li += n
		ds.limits = lops
		if !ds.refund {
			if e := st.cache.Get(lops[0].Key, now); e != nil && e.Rule == ds.rule.Index && len(e.States) == n && refusedBy(lops, e.States, ds.hits) {
				ds.cached = e
				continue
			}
		}
		op := &r.opsBuf[i]
		*op = store.Op{Hits: ds.hits, CountRefused: ds.rule.CountRefused, Refund: ds.refund, Limits: lops}
		ds.op = op
		r.ops = append(r.ops, op)
	}
}

// refusedBy reports whether a request of hits is refused by the counters
// in states.
func refusedBy(lops []store.LimitOp, states []algo.State, hits uint64) bool {
	for j := range lops {
		if !lops[j].Spec.Allowed(states[j], lops[j].Clock, hits) {
			return true
		}
	}
	return false
}

// answer turns the outcomes into the response (3rd phase).
func (l *Limiter) answer(st *state, dom *quota.Domain, req *rlsv3.RateLimitRequest, r *request, now int64, storeErr error) *answer {
	ref := st.settings.Reference
	ab := newAnswer(len(r.descs))
	resp := &ab.resp
	resp.OverallCode = rlsv3.RateLimitResponse_OK
	var hdr headerPick
	refHdr := newRefHeaderPick()
	var quotaViolations []int
	quotaEnabled := false
	// degraded: some descriptor was answered without the store.
	degraded := false
	// partial: the store answered some descriptors (their nodes of a
	// Redis Cluster did) and not others; each op's Err says which.
	var partial *store.PartialError
	if storeErr != nil {
		errors.As(storeErr, &partial)
	}
	for i := range r.descs {
		ds := &r.descs[i]
		s := resp.Statuses[i]
		s.Code = rlsv3.RateLimitResponse_OK
		rule := ds.rule
		if rule == nil || ds.skip {
			continue
		}
		storeErr := storeErr
		if partial != nil && ds.op != nil {
			storeErr = ds.op.Err
		}
		if rule.Unlimited {
			ds.rm.hits.Add(float64(ds.hits))
			s.LimitRemaining = math.MaxUint32
			ds.rm.decisions[DecisionUnlimited].Inc()
			continue
		}
		quotaEnabled = quotaEnabled || rule.QuotaMode
		if ds.refund {
			if storeErr != nil {
				// Nothing was given back; a refund refuses nothing either.
				ds.rm.count(DecisionDegradedOpen)
				degraded = true
				continue
			}
			l.refunded(st, ds, s, ab, i)
			continue
		}
		ds.rm.hits.Add(float64(ds.hits))
		var dec Decision
		var pick limitOutcome
		var ro refOutcome
		switch {
		case ds.cached != nil:
			var over bool
			over, pick = decide(ds, ds.cached.States, rule.CountRefused)
			dec = DecisionOK
			if over {
				dec = DecisionOverLimitLocal
			}
			ro = refOutcome{hits: ds.hits, local: true}
		case storeErr != nil:
			if rule.FailOpen {
				dec = DecisionDegradedOpen
			} else {
				dec = DecisionDegradedClosed
			}
		default:
			var over bool
			over, pick = decide(ds, opStates(ds.op), ds.op.Applied)
			dec = DecisionOK
			if over {
				dec = DecisionOverLimit
			}
			remember(st, ds, now)
			if lo := &ds.op.Limits[0]; ds.rr != nil {
				before := uint64(max(lo.State.A, 0))
				ro = refOutcome{hits: ds.hits, before: before, after: before}
				if ds.op.Applied {
					ro.after += ds.hits
				}
			}
		}
		if dec == DecisionDegradedOpen || dec == DecisionDegradedClosed {
			// Metered and logged as degraded whatever the rule's mode: a
			// shadow or quota-mode rule answers OK, but nothing was decided.
			ds.rm.count(dec)
			degraded = true
			if ds.rr != nil {
				l.refSeries(dom, ds, req.GetDescriptors()[i]).totalHits.Add(ds.hits)
			}
			l.degradedLog.log(l.log, slog.LevelWarn, "rate limit store unavailable; answering by the failure mode", "domain", dom.Name, "rule", rule.ID, "decision", dec.String(), "err", storeErr.Error())
			if dec == DecisionDegradedClosed && !rule.Shadow && !rule.QuotaMode {
				s.Code = rlsv3.RateLimitResponse_OVER_LIMIT
				resp.OverallCode = rlsv3.RateLimitResponse_OVER_LIMIT
				hdr.degraded = true
			}
			continue
		}
		over := dec == DecisionOverLimit || dec == DecisionOverLimitLocal
		// As the reference: shadow mode turns the refusal OK first; a
		// refusal left is then a quota-mode violation (per rule, or every
		// rule with the reference's global QUOTA_MODE).
		if over && rule.Shadow {
			l.shadowLog.log(l.log, slog.LevelInfo, "shadow rate limit would refuse; answered OK", "domain", dom.Name, "rule", rule.ID, "decision", dec.String())
			dec, over, ro.shadow = DecisionShadow, false, true
		}
		quotaMode := over && (rule.QuotaMode || (ref != nil && ref.QuotaMode))
		if quotaMode {
			dec, over = DecisionQuotaMode, false
			quotaViolations = append(quotaViolations, i)
		}
		ds.rm.decisions[dec].Inc()
		if ds.rr != nil {
			ro.limit = rule.Limits[0].Spec.Limit
			l.refSeries(dom, ds, req.GetDescriptors()[i]).count(ro, st.settings.NearLimitRatio)
		}
		if pick.lim != nil {
			s.CurrentLimit = pick.lim.Proto
			s.LimitRemaining = clampU32(pick.d.Remaining)
			// As the reference: a quota-mode status past its limit has
			// no duration_until_reset.
			if !quotaMode {
				s.DurationUntilReset = ab.duration(i, pick.d.Reset)
			}
			hdr.consider(rule, pick, over)
			refHdr.consider(s, s.LimitRemaining, over)
		}
		if over {
			s.Code = rlsv3.RateLimitResponse_OVER_LIMIT
			resp.OverallCode = rlsv3.RateLimitResponse_OVER_LIMIT
		}
	}
	if degraded && resp.OverallCode == rlsv3.RateLimitResponse_OK {
		// Let through without a decision: the upstream hears of it.
		resp.RequestHeadersToAdd = degradedOpenHeaders
	}
	if ref == nil {
		resp.ResponseHeadersToAdd = hdr.headers(st.settings, ab)
		return ab
	}
	if refHdr.s != nil {
		resp.ResponseHeadersToAdd = refHdr.headers(ref, refHdr.s.GetLimitRemaining(), now/1e6)
	}
	// The reference's global shadow mode changes the overall code only.
	if ref.ShadowMode && resp.OverallCode == rlsv3.RateLimitResponse_OVER_LIMIT {
		resp.OverallCode = rlsv3.RateLimitResponse_OK
	}
	if ref.DynamicMetadata {
		resp.DynamicMetadata = refMetadata(req, quotaViolations, quotaEnabled)
	}
	return ab
}

// refunded answers a refund (is_negative_hits): OK, with the limit that
// has least left once the hits are back; the local cache forgets the key.
func (l *Limiter) refunded(st *state, ds *descState, s *rlsv3.RateLimitResponse_DescriptorStatus, ab *answer, i int) {
	ds.rm.decisions[DecisionRefund].Inc()
	st.cache.Remove(ds.limits[0].Key)
	var pick limitOutcome
	for j := range ds.op.Limits {
		lo := &ds.op.Limits[j]
		after := lo.Spec.Refund(lo.State, lo.Clock, ds.hits)
		d := lo.Spec.Decide(after, lo.Clock, 0, false)
		if pick.lim == nil || d.Remaining < pick.d.Remaining {
			pick = limitOutcome{ds.rule.Limits[j], d}
		}
	}
	s.CurrentLimit = pick.lim.Proto
	s.LimitRemaining = clampU32(pick.d.Remaining)
	s.DurationUntilReset = ab.duration(i, pick.d.Reset)
}

// refSeries is the reference-named series a descriptor counts in.
func (l *Limiter) refSeries(dom *quota.Domain, ds *descState, d *ratelimitv3.RateLimitDescriptor) *refSeries {
	switch {
	case ds.override:
		return ds.rr.of(l.m.ref, quota.OverrideStatsKey(dom.Name, d.GetEntries()))
	case ds.rule.PerValueStats:
		return ds.rr.of(l.m.ref, dom.StatsKey(ds.rule, d.GetEntries()))
	}
	return ds.rr.base
}

// limitOutcome is one limit's decision, to report.
type limitOutcome struct {
	lim *quota.Limit
	d   algo.Decision
}

func opStates(op *store.Op) []algo.State {
	var buf [4]algo.State
	out := buf[:0]
	for j := range op.Limits {
		out = append(out, op.Limits[j].State)
	}
	return out
}

// decide decides a descriptor from its counters' states (read by the
// store before the op, or held by the local cache): over if the hits were
// not applied or a limit refuses them (counted refusals). The limit
// reported is a refusing one (the latest to free up), else the one with
// least remaining. The cache's entries hold exactly the states the store
// would read, so both paths answer alike.
func decide(ds *descState, states []algo.State, applied bool) (bool, limitOutcome) {
	var pick limitOutcome
	pickRefused := false
	over := !applied
	for j := range ds.limits {
		lo := &ds.limits[j]
		lim := ds.rule.Limits[j]
		d := lo.Spec.Decide(states[j], lo.Clock, ds.hits, applied)
		refused := !lo.Spec.Allowed(states[j], lo.Clock, ds.hits)
		over = over || refused
		switch {
		case pick.lim == nil, refused && !pickRefused:
			pick, pickRefused = limitOutcome{lim, d}, refused
		case refused && pick.d.RetryAfter >= 0 && (d.RetryAfter < 0 || d.RetryAfter > pick.d.RetryAfter):
			pick = limitOutcome{lim, d}
		case !refused && !pickRefused && d.Remaining < pick.d.Remaining:
			pick = limitOutcome{lim, d}
		}
	}
	if over {
		pick.d.Allowed = false
	}
	return over, pick
}

// remember puts a descriptor the store answered into the local cache when
// its counters now refuse, with their states, until the answer from those
// states could differ from the store's:
//
//   - a rule counting refused hits (the reference's) only once strictly
//     past its limit, as the reference caches: at the limit a check-only
//     request (hits_addend 0) is still OK, and a refused hit answered from
//     the cache would not be counted. Past it, more hits keep it past, so
//     the entry holds to the window's end;
//   - an all-or-nothing rule (gatehouse's) once one hit is refused: no
//     request of this descriptor counts anything while it refuses, so the
//     states are frozen until one hit fits again or a window turns.
//
// Outside reference mode an entry lives at most settings.CacheMaxAge: a
// refund on another replica is the one thing that changes frozen counters.
func remember(st *state, ds *descState, now int64) {
	if st.cache == nil {
		return
	}
	op := ds.op
	need := uint64(1)
	if ds.rule.CountRefused {
		need = 0
	}
	until, free, refuses := int64(math.MaxInt64), int64(0), false
	for j := range op.Limits {
		lo := &op.Limits[j]
		p := lo.State
		if op.Applied {
			p = lo.Spec.Apply(p, lo.Clock, ds.hits)
		}
		if lo.Spec.Kind != algo.GCRA {
			until = min(until, lo.Clock.End)
		}
		if lo.Spec.Allowed(p, lo.Clock, need) {
			continue
		}
		refuses = true
		if ra := lo.Spec.Decide(p, lo.Clock, 1, false).RetryAfter; !ds.rule.CountRefused && ra > 0 {
			free = max(free, now+ra)
		} else {
			free = math.MaxInt64
		}
	}
	if !refuses {
		return
	}
	until = min(until, free)
	if m := st.settings.CacheMaxAge; m > 0 {
		until = min(until, now+m)
	}
	states := make([]algo.State, len(op.Limits))
	for j := range op.Limits {
		lo := &op.Limits[j]
		states[j] = lo.State
		if op.Applied {
			states[j] = lo.Spec.Apply(lo.State, lo.Clock, ds.hits)
		}
	}
	st.cache.Add(op.Limits[0].Key, &store.CacheEntry{Until: until, Rule: ds.rule.Index, States: states}, now)
}

// appendKey appends a limit's counter key: gatehouse's layout,
// <prefix>rl:{<identity>}:<tag>[:<window start>], whose hash tag keeps a
// rule's keys in one Redis Cluster slot; or, for a rule of the reference
// mode, the reference's own key <prefix><identity><window start>.
func (l *Limiter) appendKey(kb, ident []byte, rule *quota.Rule, lim *quota.Limit, start int64) []byte {
	if rule.RefKeys {
		kb = append(kb, l.refPrefix...)
		kb = append(kb, ident...)
		return strconv.AppendInt(kb, start/1e6, 10)
	}
	kb = append(kb, l.keyPrefix...)
	kb = append(kb, '{')
	kb = append(kb, ident...)
	kb = append(kb, "}:"...)
	kb = append(kb, lim.Tag...)
	if lim.Spec.Kind != algo.GCRA {
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
	rm := l.m.rule(rule.Domain, truncate(id, maxDetailedLabel), rule.Tier)
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
