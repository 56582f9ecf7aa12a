package config

import (
	"math"
	"regexp"
	"slices"
	"strings"

	"github.com/gatehouse/gatehouse/internal/contract"
	"github.com/gatehouse/gatehouse/internal/timeunit"
)

// Bounds of a limit, chosen so that every count and time the algorithms
// handle stays exact in Redis Lua's double-precision numbers.
const (
	MaxLimitRequests = 1_000_000_000_000
	maxWindowSeconds = 5 * 366 * 86400
)

var (
	limitNamePattern       = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
	rateLimitHeaderPattern = regexp.MustCompile("^[a-z0-9!#$%&'*+.^_`|~-]+$")
	httpTokenPattern       = regexp.MustCompile("^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$")
)

func (r *RateLimit) validate(p Path, errs *Errors) {
	validateTiers(p.Field("tiers"), r.Tiers, r.Algorithm, errs)
	validateLimits(p.Field("default"), r.Default, r.Algorithm, errs)
	validateFailureTiers(p.Field("failureMode").Field("tiers"), r.FailureMode.Tiers, errs)
	if !r.KeyBy.Builtin() {
		errs.Add(p.Field("keyBy"), "%q is not a key; use subject, route or tier (a route may also key by one of its header entries)", r.KeyBy)
	}
	for i, f := range r.EnvoyConfigs {
		if f == "" {
			errs.Add(p.Field("envoyConfigs").Index(i), "is empty")
		}
	}
	for _, name := range sortedKeys(r.Domains) {
		if name == "" {
			errs.Add(p.Field("domains"), "a domain name is empty")
		}
	}
	s := p.Field("store")
	if r.Store.Timeout.D() <= 0 {
		errs.Add(s.Field("timeout"), "must be more than 0s: a Redis call must never wait forever")
	}
	if r.Store.BatchSize < 1 || r.Store.BatchSize > 4096 {
		errs.Add(s.Field("batchSize"), "%d is out of range; use 1 (no batching) to 4096", r.Store.BatchSize)
	}
	if r.Store.Pipelines < 1 || r.Store.Pipelines > 256 {
		errs.Add(s.Field("pipelines"), "%d is out of range; use 1 to 256", r.Store.Pipelines)
	}
	b := s.Field("breaker")
	if r.Store.Breaker.Failures < 1 {
		errs.Add(b.Field("failures"), "must be at least 1")
	}
	if r.Store.Breaker.OpenFor.D() <= 0 {
		errs.Add(b.Field("openFor"), "must be more than 0s")
	}
	if r.Store.Breaker.Probes < 1 {
		errs.Add(b.Field("probes"), "must be at least 1")
	}
	w := s.Field("wait")
	if r.Store.Wait.Replicas < 0 || r.Store.Wait.Replicas > 16 {
		errs.Add(w.Field("replicas"), "%d is out of range; use 0 (do not wait) to 16", r.Store.Wait.Replicas)
	}
	if r.Store.Wait.Replicas > 0 && (r.Store.Wait.Timeout.D() <= 0 || r.Store.Wait.Timeout.D() >= r.Store.Timeout.D()) {
		errs.Add(w.Field("timeout"), "%s must be more than 0s and less than store.timeout (%s): the wait is part of the round trip", r.Store.Wait.Timeout.D(), r.Store.Timeout.D())
	}
	if r.LocalCache.MaxEntries < 0 {
		errs.Add(p.Field("localCache").Field("maxEntries"), "must be 0 (off) or more")
	}
	if r.LocalCache.MaxAge.D() <= 0 {
		errs.Add(p.Field("localCache").Field("maxAge"), "must be more than 0s")
	}
	if r.Reference != nil {
		r.Reference.validate(p.Field("reference"), errs)
	}
	q := p.Field("requests")
	if r.Requests.MaxDescriptors < 1 {
		errs.Add(q.Field("maxDescriptors"), "must be at least 1")
	}
	if r.Requests.MaxEntries < 1 {
		errs.Add(q.Field("maxEntries"), "must be at least 1")
	}
	if r.Requests.MaxValueBytes < 16 || r.Requests.MaxValueBytes > 64<<10 {
		errs.Add(q.Field("maxValueBytes"), "%s is out of range; use 16 to 64KiB", r.Requests.MaxValueBytes)
	}
	if r.Requests.MaxHits < 1 || r.Requests.MaxHits > MaxLimitRequests {
		errs.Add(q.Field("maxHits"), "%d is out of range; use 1 to %d", r.Requests.MaxHits, uint64(MaxLimitRequests))
	}
}

func (r *RateLimitReference) validate(p Path, errs *Errors) {
	h := p.Field("responseHeaders")
	for _, f := range []struct{ name, v string }{{"limit", r.ResponseHeaders.Limit}, {"remaining", r.ResponseHeaders.Remaining}, {"reset", r.ResponseHeaders.Reset}} {
		if !httpTokenPattern.MatchString(f.v) {
			errs.Add(h.Field(f.name), "%q is not a header name; use letters, digits and !#$%%&'*+-.^_`|~", f.v)
		}
	}
	if r.NearLimitRatio < 0 || r.NearLimitRatio > 1 || math.IsNaN(r.NearLimitRatio) {
		errs.Add(p.Field("nearLimitRatio"), "%v is out of range; use 0 to 1", r.NearLimitRatio)
	}
	if rt := r.Runtime; rt != nil {
		rp := p.Field("runtime")
		if rt.Root == "" {
			errs.Add(rp.Field("root"), "is required: the runtime root directory (RUNTIME_ROOT)")
		}
		if rt.AppDirectory == "" {
			errs.Add(rp.Field("appDirectory"), "is required: the directory of config files under root/subdirectory (RUNTIME_APPDIRECTORY)")
		}
	}
}

func (r *RouteRateLimit) validate(p Path, c *Config, errs *Errors) {
	alg := r.Algorithm
	if alg == "" && c.RateLimit != nil {
		alg = c.RateLimit.Algorithm
	}
	validateTiers(p.Field("tiers"), r.Tiers, alg, errs)
	validateLimits(p.Field("default"), r.Default, alg, errs)
	validateFailureTiers(p.Field("failureMode").Field("tiers"), r.FailureMode.Tiers, errs)
	keys := map[string]int{}
	for i, h := range r.Headers {
		hp := p.Field("headers").Index(i)
		if !rateLimitHeaderPattern.MatchString(h.Header) {
			errs.Add(hp.Field("header"), "%q is not a header name; write it in lower case", h.Header)
		}
		switch {
		case h.Key == "":
			errs.Add(hp.Field("key"), "is required: the descriptor key of the entry")
		case KeyBy(h.Key).Builtin() || h.Key == contract.DescriptorFailureMode:
			errs.Add(hp.Field("key"), "%q is a key gatehouse sets itself; choose another", h.Key)
		default:
			if first, dup := keys[h.Key]; dup {
				errs.Add(hp.Field("key"), "duplicate key %q (also headers[%d])", h.Key, first)
			}
			keys[h.Key] = i
		}
	}
	if r.KeyBy != "" {
		_, isHeader := keys[string(r.KeyBy)]
		if !r.KeyBy.Builtin() && !isHeader {
			errs.Add(p.Field("keyBy"), "%q is not a key of this route; use subject, route, tier or the key of one of its headers", r.KeyBy)
		}
	}
	if c.RateLimit == nil && !r.Disabled {
		errs.Warn(p, "has no effect: the config has no ratelimit section, so no rate limit server runs")
	}
}

func validateTiers(p Path, tiers map[string][]Limit, alg RateLimitAlgorithm, errs *Errors) {
	for _, name := range sortedKeys(tiers) {
		if strings.TrimSpace(name) == "" {
			errs.Add(p, "a tier name is empty")
			continue
		}
		// A tier arrives from ext_authz, which only ever hands out names
		// of this form: any other key's limits could never apply.
		if !TierPattern.MatchString(name) {
			errs.Add(p.Key(name), "%q is not a tier; use 1-64 letters, digits, '.', '_' or '-'", name)
		}
		validateLimits(p.Key(name), tiers[name], alg, errs)
	}
}

func validateLimits(p Path, limits []Limit, alg RateLimitAlgorithm, errs *Errors) {
	type sig struct {
		alg RateLimitAlgorithm
		w   Window
		cal bool
	}
	if alg == "" {
		alg = AlgorithmFixed
	}
	seen := map[sig]int{}
	names := map[string]int{}
	for i := range limits {
		l := &limits[i]
		lp := p.Index(i)
		a := l.Algorithm
		if a == "" {
			a = alg
		}
		if l.Requests < 1 {
			errs.Add(lp.Field("requests"), "is required and must be at least 1 (refusing everyone is authz's job)")
		} else if l.Requests > MaxLimitRequests {
			errs.Add(lp.Field("requests"), "%d is too large; use at most %d", l.Requests, uint64(MaxLimitRequests))
		}
		if l.Per.Unit == 0 {
			errs.Add(lp.Field("per"), "is required: the window, such as second, minute or \"5 minutes\"")
			continue
		}
		if l.Per.Seconds() > maxWindowSeconds {
			errs.Add(lp.Field("per"), "%s is too long; use at most 5 years", l.Per)
		}
		if l.Calendar {
			switch {
			case l.Per.Unit != timeunit.Day && l.Per.Unit != timeunit.Week && l.Per.Unit != timeunit.Month:
				errs.Add(lp.Field("calendar"), "applies to day, week and month windows, not %s", l.Per.Unit)
			case a == AlgorithmGCRA:
				errs.Add(lp.Field("calendar"), "applies to fixed and sliding windows; a gcra bucket has no window edges")
			}
		}
		if l.Burst != 0 && a != AlgorithmGCRA {
			errs.Add(lp.Field("burst"), "applies to gcra limits only (this one is %s)", a)
		}
		if l.Burst > MaxLimitRequests {
			errs.Add(lp.Field("burst"), "%d is too large; use at most %d", l.Burst, uint64(MaxLimitRequests))
		} else if a == AlgorithmGCRA && l.Burst > 0 && l.Requests >= 1 && l.Requests <= MaxLimitRequests && l.Per.Seconds() <= maxWindowSeconds {
			// The bucket's depth in time (burst × per/requests) is kept in
			// microseconds in an int64 and in Lua's doubles: bound it as
			// windows are bounded, far inside both.
			perUs := uint64(l.Per.Seconds()) * 1_000_000
			emission := (perUs + l.Requests - 1) / l.Requests
			if emission > 0 && l.Burst > uint64(maxWindowSeconds)*1_000_000/emission {
				errs.Add(lp.Field("burst"), "%d at %d per %s takes more than 5 years to refill; use a smaller burst", l.Burst, l.Requests, l.Per)
			}
		}
		if l.Name != "" {
			if !limitNamePattern.MatchString(l.Name) {
				errs.Add(lp.Field("name"), "%q is not a limit name; use 1-64 letters, digits, '_', '.' or '-'", l.Name)
			} else if first, dup := names[l.Name]; dup {
				errs.Add(lp.Field("name"), "duplicate name %q (also [%d])", l.Name, first)
			} else {
				names[l.Name] = i
			}
		}
		s := sig{a, l.Per, l.Calendar}
		if first, dup := seen[s]; dup {
			errs.Add(lp, "same window and algorithm as [%d]; one counter cannot hold two limits", first)
			continue
		}
		seen[s] = i
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
