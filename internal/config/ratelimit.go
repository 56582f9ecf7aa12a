package config

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	// Calendar windows need the IANA time zone database, which a minimal
	// container image may not have: embed it.
	_ "time/tzdata"

	"go.yaml.in/yaml/v3"

	"github.com/gatehouse/gatehouse/internal/timeunit"
)

// RateLimit configures the rate limit service
// (envoy.service.ratelimit.v3.RateLimitService).
//
// Quotas are declared per tier: the caller's verified tier arrives in the
// descriptor Envoy builds from ext_authz's dynamic metadata. Tiers and
// Default here apply to every route; a route's own ratelimit section
// overrides them tier by tier. Domains written in envoyproxy/ratelimit's
// format (EnvoyConfigs) are served beside gatehouse's own domain.
type RateLimit struct {
	// Address is the gRPC listen address of the rate limit server.
	Address string `yaml:"address" default:"127.0.0.1:9193"`

	// Tiers are the limits of each tier on every route, unless the route
	// says otherwise. The tier of unauthenticated callers is "anonymous".
	Tiers map[string][]Limit `yaml:"tiers,omitempty"`
	// Default are the limits of a tier listed neither here nor on the
	// route. Absent: such a tier is not limited.
	Default []Limit `yaml:"default,omitempty"`
	// KeyBy is what one counter is kept for: subject (each caller),
	// or route / tier (one counter shared by all callers of the tier on
	// the route). Routes may also key by one of their header entries.
	KeyBy KeyBy `yaml:"keyBy" default:"subject"`
	// Algorithm is the default algorithm of a limit.
	Algorithm RateLimitAlgorithm `yaml:"algorithm" default:"fixed"`
	// FailureMode is the answer, per tier, when the store cannot decide:
	// open lets requests through (OK, marked degraded-open to the
	// upstream), closed refuses them (OVER_LIMIT). By default verified
	// tiers fail open and the anonymous tier closed; `failureMode: closed`
	// (or open) sets every tier. Envoy's own failure mode, when gatehouse
	// cannot be reached, follows the same per-tier modes
	// (xds.services.ratelimitFailureMode).
	FailureMode RateLimitFailureModes `yaml:"failureMode"`
	// Shadow counts and logs what would be refused but answers OK, for
	// every route and domain (a global dry run).
	Shadow bool `yaml:"shadow" default:"false"`
	// TimeZone aligns calendar windows (calendar: true): days start at
	// midnight, weeks on Monday, months on the 1st in this zone.
	TimeZone TimeZone `yaml:"timeZone" default:"UTC"`
	// ResponseHeaders selects the headers returned to the client:
	// all, ietf (RateLimit, RateLimit-Policy), legacy
	// (X-RateLimit-Limit/Remaining/Reset) or none. Retry-After is sent on
	// OVER_LIMIT with every choice but none.
	ResponseHeaders RateLimitHeaders `yaml:"responseHeaders" default:"all"`

	// EnvoyConfigs are envoyproxy/ratelimit config files, or directories
	// of them (*.yaml, *.yml), loaded unchanged.
	EnvoyConfigs []FilePath `yaml:"envoyConfigs,omitempty"`
	// MergeDomains lets several envoy config files add to one domain
	// (envoyproxy/ratelimit's MERGE_DOMAIN_CONFIG); otherwise a domain
	// written twice is an error.
	MergeDomains bool `yaml:"mergeDomains" default:"false"`
	// Domains overrides settings of the envoy config domains by name.
	Domains map[string]RateLimitDomain `yaml:"domains,omitempty"`

	// Store tunes the Redis store (or the in-process store without Redis).
	Store RateLimitStore `yaml:"store"`
	// LocalCache remembers keys already over limit until their reset, so
	// that a flood of refused requests is answered without Redis.
	LocalCache RateLimitLocalCache `yaml:"localCache"`
	// Requests bounds what one RLS request may hold; larger requests are
	// refused with InvalidArgument.
	Requests RateLimitRequests `yaml:"requests"`

	// Reference, when present, makes the envoy config domains answer
	// exactly as envoyproxy/ratelimit at the version gatehouse pins, down
	// to its response headers, dynamic metadata, Redis keys and metrics
	// (docs/ratelimit.md lists the few differences kept on purpose).
	// `gatehouse ratelimit-compat` builds it from the reference's
	// environment variables.
	Reference *RateLimitReference `yaml:"reference,omitempty"`
}

// RateLimitReference is envoyproxy/ratelimit's behaviour, setting by
// setting; each field names the reference's environment variable.
type RateLimitReference struct {
	// Runtime reads config files from the reference's runtime directory
	// (RUNTIME_ROOT and the variables beside it) as the reference does.
	Runtime *RateLimitRuntime `yaml:"runtime,omitempty"`
	// ResponseHeaders are the reference's RateLimit-Limit/-Remaining/
	// -Reset headers (LIMIT_RESPONSE_HEADERS_ENABLED and the header name
	// variables); they replace ratelimit.responseHeaders.
	ResponseHeaders RateLimitReferenceHeaders `yaml:"responseHeaders"`
	// DynamicMetadata returns the request's domain, descriptors and
	// quota-mode violations as dynamic metadata
	// (RESPONSE_DYNAMIC_METADATA).
	DynamicMetadata bool `yaml:"dynamicMetadata" default:"false"`
	// ShadowMode answers OK overall while the descriptors' statuses still
	// say OVER_LIMIT (SHADOW_MODE).
	ShadowMode bool `yaml:"shadowMode" default:"false"`
	// QuotaMode treats every limit as quota_mode: true (QUOTA_MODE).
	QuotaMode bool `yaml:"quotaMode" default:"false"`
	// NearLimitRatio is the share of a limit past which hits count as
	// near_limit in the reference's metrics (NEAR_LIMIT_RATIO).
	NearLimitRatio float64 `yaml:"nearLimitRatio" default:"0.8"`
}

// RateLimitReferenceHeaders are the reference's response headers.
type RateLimitReferenceHeaders struct {
	// Enabled sends them (LIMIT_RESPONSE_HEADERS_ENABLED).
	Enabled bool `yaml:"enabled" default:"false"`
	// Limit is the header with the limit (LIMIT_LIMIT_HEADER).
	Limit string `yaml:"limit" default:"RateLimit-Limit"`
	// Remaining is the header with what remains (LIMIT_REMAINING_HEADER).
	Remaining string `yaml:"remaining" default:"RateLimit-Remaining"`
	// Reset is the header with the seconds to the window's end
	// (LIMIT_RESET_HEADER).
	Reset string `yaml:"reset" default:"RateLimit-Reset"`
}

// RateLimitRuntime is the reference's runtime directory: config files are
// every file under Root/Subdirectory/AppDirectory (recursively), whatever
// its name. Kubernetes' ConfigMap internals (entries starting with "..")
// are skipped; other dot files only with IgnoreDotFiles.
type RateLimitRuntime struct {
	// Root is RUNTIME_ROOT.
	Root string `yaml:"root"`
	// Subdirectory is RUNTIME_SUBDIRECTORY.
	Subdirectory string `yaml:"subdirectory"`
	// AppDirectory is RUNTIME_APPDIRECTORY.
	AppDirectory string `yaml:"appDirectory" default:"config"`
	// IgnoreDotFiles skips files and directories whose names start with a
	// dot (RUNTIME_IGNOREDOTFILES).
	IgnoreDotFiles bool `yaml:"ignoreDotFiles" default:"false"`
	// WatchRoot also watches Root's parent, for a Root that is a symlink
	// swapped to a new directory (RUNTIME_WATCH_ROOT).
	WatchRoot bool `yaml:"watchRoot" default:"true"`
}

// Dir is the directory holding the config files.
func (r *RateLimitRuntime) Dir() string {
	return filepath.Join(r.Root, r.Subdirectory, r.AppDirectory)
}

// Limit is one quota: Requests per window, counted by Algorithm.
type Limit struct {
	// Name identifies the limit in response headers (RateLimit-Policy)
	// and metrics; by default it is made from the tier and the window.
	Name string `yaml:"name,omitempty"`
	// Requests is how many requests (hits) the window admits.
	Requests uint64 `yaml:"requests"`
	// Per is the window: a unit (second, minute, hour, day, week, month)
	// or a count of one ("5 minutes").
	Per Window `yaml:"per"`
	// Calendar aligns a day, week or month window to the calendar in
	// ratelimit.timeZone (billing periods) instead of to the Unix epoch.
	Calendar bool `yaml:"calendar,omitempty"`
	// Algorithm overrides the route's and the component's algorithm.
	Algorithm RateLimitAlgorithm `yaml:"algorithm,omitempty"`
	// Burst is the bucket size of a gcra limit: how many requests may
	// arrive at once. Default: Requests.
	Burst uint64 `yaml:"burst,omitempty"`
}

// RouteRateLimit is a route's quota. Every field is optional: what it
// leaves out comes from the ratelimit section.
type RouteRateLimit struct {
	// Disabled turns rate limiting off for the route.
	Disabled bool `yaml:"disabled,omitempty"`
	// Tiers replace the component's limits of the tiers they name; an
	// empty list makes a tier unlimited on this route.
	Tiers map[string][]Limit `yaml:"tiers,omitempty"`
	// Default replaces the component's default limits on this route.
	Default []Limit `yaml:"default,omitempty"`
	// KeyBy: subject, route, tier or the key of one of Headers.
	KeyBy KeyBy `yaml:"keyBy,omitempty"`
	// Algorithm is the default algorithm of this route's limits.
	Algorithm RateLimitAlgorithm `yaml:"algorithm,omitempty"`
	// Shadow answers OK on this route but counts and logs refusals.
	Shadow *bool `yaml:"shadow,omitempty"`
	// FailureMode overrides the component's failure modes on this route:
	// one value (open, closed) for every tier, or default, anonymous and
	// tiers, each over everything the component sets.
	FailureMode RouteFailureModes `yaml:"failureMode,omitempty"`
	// Headers add descriptor entries built from request headers (Envoy
	// request_headers actions), after route, tier and subject, so that a
	// route can key its quota by, say, a tenant header.
	Headers []RateLimitHeaderEntry `yaml:"headers,omitempty"`
}

// RateLimitHeaderEntry makes a descriptor entry of a request header.
type RateLimitHeaderEntry struct {
	// Header is the request header name (lower case).
	Header string `yaml:"header"`
	// Key is the descriptor key of the entry.
	Key string `yaml:"key"`
}

// RateLimitDomain overrides settings for one envoy config domain.
type RateLimitDomain struct {
	// FailureMode is the domain's answer when the store cannot decide;
	// absent, ratelimit.failureMode.default. (In reference mode a store
	// failure is an error, as the reference answers, and Envoy's
	// failure_mode_deny decides.)
	FailureMode FailureMode `yaml:"failureMode,omitempty"`
	// Shadow answers OK for the whole domain but counts and logs what it
	// would refuse (envoyproxy/ratelimit's SHADOW_MODE, per domain).
	Shadow *bool `yaml:"shadow,omitempty"`
}

// RateLimitStore tunes the store round trips.
type RateLimitStore struct {
	// Timeout bounds one round trip to Redis; past it the answer follows
	// the failure mode.
	Timeout Duration `yaml:"timeout" default:"100ms"`
	// BatchSize is how many concurrent RLS requests may share one Redis
	// round trip (1 turns batching off).
	BatchSize int `yaml:"batchSize" default:"128"`
	// Pipelines is how many round trips may be in flight at once (to each
	// node of a Redis Cluster). Few and full beat many and small: each
	// round trip costs system calls and a script run, and batches grow
	// while round trips are out.
	Pipelines int `yaml:"pipelines" default:"2"`
	// Breaker stops calling a failing Redis for a while, so that a dead
	// Redis costs microseconds instead of a timeout per request.
	Breaker RateLimitBreaker `yaml:"breaker"`
	// Wait, with replicas above 0, makes every round trip wait for that
	// many replicas to acknowledge its writes (Redis WAIT): an admission
	// fewer replicas acknowledged in time is answered by the failure mode
	// instead (its hits stay counted), trading refusals for the
	// over-admission a failover would cause. Off by default; see "Redis
	// failures" in docs/ratelimit.md for the bounds and the cost.
	Wait RateLimitWait `yaml:"wait"`
}

// RateLimitWait asks Redis to confirm replication before an answer.
type RateLimitWait struct {
	// Replicas is how many replicas must acknowledge (0: do not wait).
	Replicas int `yaml:"replicas" default:"0"`
	// Timeout bounds the wait; it is part of store.timeout and must be
	// shorter.
	Timeout Duration `yaml:"timeout" default:"50ms"`
}

// RateLimitBreaker is the circuit breaker around the Redis store.
type RateLimitBreaker struct {
	// Failures is how many consecutive failed round trips open it.
	Failures uint32 `yaml:"failures" default:"5"`
	// OpenFor is how long it stays open before probing Redis again.
	OpenFor Duration `yaml:"openFor" default:"1s"`
	// Probes is how many round trips may test Redis while half open.
	Probes uint32 `yaml:"probes" default:"1"`
}

// RateLimitLocalCache is the cache of keys known to be over limit.
type RateLimitLocalCache struct {
	// MaxEntries bounds the cache; 0 turns it off.
	MaxEntries int `yaml:"maxEntries" default:"100000"`
	// MaxAge bounds how long a replica answers a key from its cache. A
	// refund (is_negative_hits) on another replica can free a key this one
	// still refuses; past MaxAge the store is asked again. In reference
	// mode, where refunds are charged as the reference does, keys are
	// cached to their window's end.
	MaxAge Duration `yaml:"maxAge" default:"1s"`
}

// RateLimitRequests bounds one RLS request.
type RateLimitRequests struct {
	// MaxDescriptors bounds the descriptors of one request.
	MaxDescriptors int `yaml:"maxDescriptors" default:"64"`
	// MaxEntries bounds the entries of one descriptor.
	MaxEntries int `yaml:"maxEntries" default:"16"`
	// MaxValueBytes bounds one entry key or value.
	MaxValueBytes ByteSize `yaml:"maxValueBytes" default:"1KiB"`
	// MaxHits bounds hits_addend (request or descriptor).
	MaxHits uint64 `yaml:"maxHits" default:"1000000"`
}

// RateLimitAlgorithm is how a limit counts.
type RateLimitAlgorithm string

// Rate limit algorithms.
const (
	// AlgorithmFixed counts per fixed window, as envoyproxy/ratelimit.
	AlgorithmFixed RateLimitAlgorithm = "fixed"
	// AlgorithmSliding weighs the previous window by how much of it is
	// still inside the sliding window: no double burst at window edges.
	AlgorithmSliding RateLimitAlgorithm = "sliding"
	// AlgorithmGCRA is a token bucket (generic cell rate algorithm) with
	// an explicit burst.
	AlgorithmGCRA RateLimitAlgorithm = "gcra"
)

// EnumValues implements Enum.
func (RateLimitAlgorithm) EnumValues() []string { return []string{"fixed", "sliding", "gcra"} }

// EnumNoun implements Enum.
func (RateLimitAlgorithm) EnumNoun() string { return "an algorithm" }

// RateLimitHeaders selects the rate limit headers sent to clients.
type RateLimitHeaders string

// Header styles.
const (
	HeadersAll    RateLimitHeaders = "all"
	HeadersIETF   RateLimitHeaders = "ietf"
	HeadersLegacy RateLimitHeaders = "legacy"
	HeadersNone   RateLimitHeaders = "none"
)

// EnumValues implements Enum.
func (RateLimitHeaders) EnumValues() []string { return []string{"all", "ietf", "legacy", "none"} }

// EnumNoun implements Enum.
func (RateLimitHeaders) EnumNoun() string { return "a header style" }

// MaxWindowCount bounds the count of a window ("5 minutes").
const MaxWindowCount = 1000

// Window is a count of a unit, written "minute" or "5 minutes". The
// units of gatehouse's config are second to month (internal/timeunit).
type Window struct {
	Count uint32
	Unit  timeunit.Unit
}

// String renders the window as it is written in config.
func (w Window) String() string {
	if w.Count <= 1 {
		return w.Unit.String()
	}
	return strconv.FormatUint(uint64(w.Count), 10) + " " + w.Unit.String() + "s"
}

// ParseWindow reads "minute", "5 minutes" or "5 minute".
func ParseWindow(s string) (Window, error) {
	f := strings.Fields(s)
	var w Window
	var unit string
	switch len(f) {
	case 1:
		w.Count, unit = 1, f[0]
	case 2:
		n, err := strconv.ParseUint(f[0], 10, 32)
		if err != nil || n < 1 || n > MaxWindowCount {
			return Window{}, fmt.Errorf("%q is not a window; the count must be a whole number from 1 to %d, as in \"5 minutes\"", s, MaxWindowCount)
		}
		w.Count, unit = uint32(n), strings.TrimSuffix(f[1], "s")
	default:
		return Window{}, fmt.Errorf("%q is not a window; write a unit (%s) or a count and a unit, as in \"5 minutes\"", s, strings.Join(timeunit.Names(timeunit.Second, timeunit.Month), "|"))
	}
	u, ok := timeunit.Parse(unit, false)
	if !ok || u > timeunit.Month {
		return Window{}, fmt.Errorf("%q is not a unit; use %s", unit, strings.Join(timeunit.Names(timeunit.Second, timeunit.Month), "|"))
	}
	w.Unit = u
	return w, nil
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (w *Window) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected a window such as minute or \"5 minutes\"")
	}
	v, err := ParseWindow(n.Value)
	if err != nil {
		return err
	}
	*w = v
	return nil
}

// MarshalYAML renders the window as it is written.
func (w Window) MarshalYAML() (any, error) { return w.String(), nil }

// Seconds is the nominal length of the window (a month is 30 days).
func (w Window) Seconds() int64 { return w.Unit.Seconds() * int64(w.Count) }

// EffectiveRateLimit is a route's quota once the ratelimit section's
// defaults are merged in.
type EffectiveRateLimit struct {
	// Tiers are the limits of each named tier (an empty list: unlimited).
	Tiers map[string][]Limit
	// Default applies to tiers not in Tiers; nil means unlimited.
	Default   []Limit
	KeyBy     KeyBy
	Algorithm RateLimitAlgorithm
	Shadow    bool
	// FailureMode are the route's failure modes, the route's own merged
	// over the component's.
	FailureMode RateLimitFailureModes
	Headers     []RateLimitHeaderEntry
}

// Limited reports whether any tier of the route has a limit.
func (e *EffectiveRateLimit) Limited() bool {
	if len(e.Default) > 0 {
		return true
	}
	for _, l := range e.Tiers {
		if len(l) > 0 {
			return true
		}
	}
	return false
}

// EffectiveRateLimit merges route r's ratelimit section over the
// component's defaults. It returns nil when the route is not limited: no
// ratelimit component, the route disabled it, or no tier has a limit.
func (r *Route) EffectiveRateLimit(c *Config) *EffectiveRateLimit {
	rl := c.RateLimit
	if rl == nil {
		return nil
	}
	e := &EffectiveRateLimit{
		Tiers:       map[string][]Limit{},
		Default:     rl.Default,
		KeyBy:       rl.KeyBy,
		Algorithm:   rl.Algorithm,
		Shadow:      rl.Shadow,
		FailureMode: rl.FailureMode,
	}
	for t, l := range rl.Tiers {
		e.Tiers[t] = l
	}
	if rr := r.RateLimit; rr != nil {
		if rr.Disabled {
			return nil
		}
		for t, l := range rr.Tiers {
			e.Tiers[t] = l
		}
		if rr.Default != nil {
			e.Default = rr.Default
		}
		if rr.KeyBy != "" {
			e.KeyBy = rr.KeyBy
		}
		if rr.Algorithm != "" {
			e.Algorithm = rr.Algorithm
		}
		if rr.Shadow != nil {
			e.Shadow = *rr.Shadow || rl.Shadow
		}
		e.FailureMode = e.FailureMode.with(rr.FailureMode)
		e.Headers = rr.Headers
	}
	if !e.Limited() {
		return nil
	}
	return e
}

// RateLimitNeeds says which rate limit descriptor Envoy sends for route r:
// route, tier and subject, then the route's header entries.
func (r *Route) RateLimitNeeds(c *Config) RateLimitNeeds {
	e := r.EffectiveRateLimit(c)
	if e == nil {
		return RateLimitNeeds{}
	}
	n := RateLimitNeeds{Enabled: true}
	for _, h := range e.Headers {
		n.HeaderEntries = append(n.HeaderEntries, HeaderDescriptor{Header: h.Header, Key: h.Key})
	}
	n.FailureMode, n.Except = e.envoyFailureModes()
	return n
}

// envoyFailureModes are the failure modes Envoy applies when the rate
// limit service cannot answer: the mode of the tiers that no limit or
// failure mode names, and the named tiers whose mode is the other one.
func (e *EffectiveRateLimit) envoyFailureModes() (FailureMode, []string) {
	mode := func(tier string, limited bool) FailureMode {
		if !limited || e.Shadow {
			return FailOpen
		}
		return e.FailureMode.For(tier)
	}
	def := mode("", len(e.Default) > 0)
	named := e.FailureMode.Named()
	for t := range e.Tiers {
		if !slices.Contains(named, t) {
			named = append(named, t)
		}
	}
	slices.Sort(named)
	var except []string
	for _, t := range named {
		limits, listed := e.Tiers[t]
		if !listed {
			limits = e.Default
		}
		if mode(t, len(limits) > 0) != def {
			except = append(except, t)
		}
	}
	return def, except
}
