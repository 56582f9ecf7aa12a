package extproc

import (
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/contract"
	"github.com/gatehouse/gatehouse/internal/jsonpath"
	"github.com/gatehouse/gatehouse/internal/sfv"
	"github.com/gatehouse/gatehouse/ratelimit/algo"
	"github.com/gatehouse/gatehouse/ratelimit/budget"
)

// Budget headers. The remaining budget goes to the upstream with the
// request (it may shorten an answer) and to the client with the response;
// both carry the window with the least room left, this request's
// reservation counted.
const (
	HeaderBudgetRemaining = contract.IdentityHeaderPrefix + "budget-remaining"
	HeaderBudgetReserved  = contract.IdentityHeaderPrefix + "budget-reserved"
	headerRateLimit       = "ratelimit"
	headerRateLimitPolicy = "ratelimit-policy"
	headerRetryAfter      = "retry-after"
)

// Problem types of the budget stage, and the RESPONSE_CODE_DETAILS Envoy
// logs for them.
const (
	problemBudgetExhausted   = "urn:gatehouse:problem:budget-exhausted"
	problemBudgetUnavailable = "urn:gatehouse:problem:budget-unavailable"
)

var budgetDetails = map[string]string{
	problemBudgetExhausted:   "gatehouse_budget_exhausted",
	problemBudgetUnavailable: "gatehouse_budget_unavailable",
}

// budgetPolicy is a route's compiled budget.
type budgetPolicy struct {
	name, unit string
	tiers      map[string]*budgetTier
	def        *budgetTier // nil: unlisted tiers are not limited
	keyBy      config.KeyBy
	hold       time.Duration
	onExpiry   budget.OnExpiry
	failOpen   bool
	audit      bool
	maxBody    int64

	reserveFixed, reserveMin, reserveMax uint64
	reserveHeader                        string
	reservePath                          jsonpath.Path

	costFrom    config.CostSource
	costHeader  string
	costPath    jsonpath.Path
	unknownZero bool
}

// budgetTier is the windows of one tier (or of the default), with their
// RateLimit-Policy header made once.
type budgetTier struct {
	label  string // metric label: the tier's name, or "default"
	limits []budget.Limit
	policy string
	// max is the estimate's cap: the smallest window, and reserve.max
	// when lower (an estimate over a window could never be admitted).
	max uint64
}

func compileBudget(cfg *config.Config, cr *config.Route) *budgetPolicy {
	b := cr.Budget
	if b == nil || cfg.ExtProc == nil {
		return nil
	}
	loc := b.BudgetTimeZone(cfg).Location()
	p := &budgetPolicy{
		name: b.Name, unit: b.Unit, tiers: map[string]*budgetTier{}, keyBy: b.KeyBy,
		hold: b.Hold.D(), failOpen: b.FailureMode == config.FailOpen, audit: b.Audit, maxBody: int64(b.MaxBodySize),
		reserveFixed: b.Reserve.Fixed, reserveMin: b.Reserve.Min, reserveMax: b.Reserve.Max,
		reserveHeader: b.Reserve.Header, reservePath: b.Reserve.JSONPath.Path,
		costFrom: b.Cost.From, costHeader: b.Cost.Header, costPath: b.Cost.JSONPath.Path,
		unknownZero: b.Cost.Unknown == config.UnknownZero,
	}
	if b.OnExpiry == config.ExpiryRefund {
		p.onExpiry = budget.ExpireRefund
	}
	tier := func(label string, ls []config.BudgetLimit) *budgetTier {
		if len(ls) == 0 {
			return nil
		}
		t := &budgetTier{label: label, max: b.Reserve.Max}
		var pol []string
		for _, l := range ls {
			w := algo.Window{Count: int64(l.Per.Count), Unit: l.Per.Unit, Calendar: l.Calendar, Loc: loc}
			bl := budget.Limit{Name: l.Name, Amount: l.Amount, Window: w}
			if bl.Name == "" {
				bl.Name = b.Name + "-" + bl.Tag()
			}
			t.limits = append(t.limits, bl)
			pol = append(pol, sfv.String(bl.Name)+";q="+strconv.FormatUint(l.Amount, 10)+";w="+strconv.FormatInt(w.Nominal()/1e6, 10)+`;qu="`+b.Unit+`"`)
			if t.max == 0 || l.Amount < t.max {
				t.max = l.Amount
			}
		}
		t.policy = strings.Join(pol, ", ")
		return t
	}
	for name, ls := range b.Tiers {
		p.tiers[name] = tier(name, ls) // nil for an empty list: unlimited
	}
	p.def = tier("default", b.Default)
	return p
}

// tierOf is the windows of a caller's tier; nil when the tier is not
// limited by the budget.
func (p *budgetPolicy) tierOf(tier string) *budgetTier {
	if t, ok := p.tiers[tier]; ok {
		return t
	}
	return p.def
}

// key is the budget key of a caller.
func (p *budgetPolicy) key(tier, subject string) string {
	switch p.keyBy {
	case config.KeyByTier:
		return budget.Key(p.name, "tier", tier)
	case config.KeyByRoute:
		return budget.Key(p.name, "all", "")
	}
	return budget.Key(p.name, "subject", subject)
}

// estimate clamps a declared estimate (or the fixed one) to the tier's
// bounds.
func (p *budgetPolicy) estimate(t *budgetTier, declared uint64, ok bool) uint64 {
	e := p.reserveFixed
	if ok {
		e = declared
	}
	e = max(e, p.reserveMin)
	if t.max > 0 {
		e = min(e, t.max)
	}
	return e
}
