package config

import (
	"regexp"

	"github.com/gatehouse/gatehouse/internal/timeunit"
)

var budgetUnitPattern = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)

func (b *RouteBudget) validate(p Path, route *Route, c *Config, errs *Errors) {
	if c.ExtProc == nil {
		errs.Add(p, "needs the extproc section: ext_proc reserves and settles budgets")
	}
	if route.ServedToGRPC(c) {
		// A budget is read from HTTP bodies and headers by a filter of
		// Envoy's; a proxyless gRPC client's API listener has neither.
		errs.Add(p, "cannot apply to proxyless gRPC clients (a grpc listener serves this route): the budget stage is an Envoy filter reading HTTP answers; serve the route on an http listener")
	}
	if !limitNamePattern.MatchString(b.Name) {
		errs.Add(p.Field("name"), "%q is not a budget name; use 1-64 letters, digits, '_', '.' or '-'", b.Name)
	}
	if !budgetUnitPattern.MatchString(b.Unit) {
		errs.Add(p.Field("unit"), "%q is not a unit; use a lower-case word such as tokens, bytes or credits", b.Unit)
	}
	for _, t := range sortedKeys(b.Tiers) {
		validateBudgetLimits(p.Field("tiers").Key(t), b.Tiers[t], errs)
	}
	validateBudgetLimits(p.Field("default"), b.Default, errs)
	if len(b.Default) == 0 {
		limited := false
		for _, ls := range b.Tiers {
			limited = limited || len(ls) > 0
		}
		if !limited {
			errs.Add(p, "limits no tier; give tiers or default at least one window")
		}
	}
	if !b.KeyBy.Builtin() {
		errs.Add(p.Field("keyBy"), "%q is not a key; use subject, tier or route", b.KeyBy)
	}
	r := p.Field("reserve")
	if b.Reserve.Header != "" && !rateLimitHeaderPattern.MatchString(b.Reserve.Header) {
		errs.Add(r.Field("header"), "%q is not a header name; write it in lower case", b.Reserve.Header)
	}
	if b.Reserve.Header != "" && !b.Reserve.JSONPath.IsZero() {
		errs.Add(r, "reads the estimate from a header or a JSON path, not both")
	}
	for _, f := range []struct {
		name string
		v    uint64
	}{{"fixed", b.Reserve.Fixed}, {"min", b.Reserve.Min}, {"max", b.Reserve.Max}} {
		if f.v > MaxBudgetAmount {
			errs.Add(r.Field(f.name), "%d is too large; use at most %d", f.v, uint64(MaxBudgetAmount))
		}
	}
	if b.Reserve.Max > 0 && b.Reserve.Min > b.Reserve.Max {
		errs.Add(r.Field("min"), "%d is more than max %d", b.Reserve.Min, b.Reserve.Max)
	}
	if b.Reserve.Max > 0 && b.Reserve.Fixed > b.Reserve.Max {
		errs.Add(r.Field("fixed"), "%d is more than max %d", b.Reserve.Fixed, b.Reserve.Max)
	}
	cp := p.Field("cost")
	switch b.Cost.From {
	case CostHeader:
		if !rateLimitHeaderPattern.MatchString(b.Cost.Header) {
			errs.Add(cp.Field("header"), "%q is not a header name; from: header needs the lower-case name of the response header with the cost", b.Cost.Header)
		}
	case CostJSON:
		if b.Cost.JSONPath.IsZero() {
			errs.Add(cp.Field("jsonPath"), "is required with from: json, as in $.usage.total_tokens")
		}
	case CostBytes:
	default:
		errs.Add(cp.Field("from"), "is required: header, json or bytes")
	}
	if b.Cost.From != CostHeader && b.Cost.Header != "" {
		errs.Add(cp.Field("header"), "applies to from: header only")
	}
	if b.Cost.From != CostJSON && !b.Cost.JSONPath.IsZero() {
		errs.Add(cp.Field("jsonPath"), "applies to from: json only")
	}
	if b.Hold.D() < 1e9 || b.Hold.D() > 24*3600e9 {
		errs.Add(p.Field("hold"), "%s is out of range; use 1s to 24h, longer than the route's longest response", b.Hold)
	}
	if b.MaxBodySize < 1 || b.MaxBodySize > 64<<20 {
		errs.Add(p.Field("maxBodySize"), "%s is out of range; use 1 byte to 64MiB", b.MaxBodySize)
	}
}

func validateBudgetLimits(p Path, ls []BudgetLimit, errs *Errors) {
	type sig struct {
		w   Window
		cal bool
	}
	seen := map[sig]int{}
	for i, l := range ls {
		lp := p.Index(i)
		if l.Name != "" && !limitNamePattern.MatchString(l.Name) {
			errs.Add(lp.Field("name"), "%q is not a limit name; use 1-64 letters, digits, '_', '.' or '-'", l.Name)
		}
		if l.Amount < 1 || l.Amount > MaxBudgetAmount {
			errs.Add(lp.Field("amount"), "%d is out of range; use 1 to %d", l.Amount, uint64(MaxBudgetAmount))
		}
		if l.Per.Unit == 0 {
			errs.Add(lp.Field("per"), "is required: the window, such as minute, day or month")
			continue
		}
		if l.Per.Seconds() > maxWindowSeconds {
			errs.Add(lp.Field("per"), "%s is too long; use at most 5 years", l.Per)
		}
		if l.Calendar && l.Per.Unit != timeunit.Day && l.Per.Unit != timeunit.Week && l.Per.Unit != timeunit.Month {
			errs.Add(lp.Field("calendar"), "applies to day, week and month windows, not %s", l.Per.Unit)
		}
		s := sig{l.Per, l.Calendar}
		if j, dup := seen[s]; dup {
			errs.Add(lp.Field("per"), "the same window as [%d]; one amount per window", j)
		}
		seen[s] = i
	}
}

// BudgetTimeZone is the zone of the budget's calendar windows.
func (b *RouteBudget) BudgetTimeZone(c *Config) TimeZone {
	if b.TimeZone.String() != "" {
		return b.TimeZone
	}
	if c.RateLimit != nil {
		return c.RateLimit.TimeZone
	}
	return TimeZone{}
}
