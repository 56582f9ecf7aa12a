package config

import (
	"math"

	"go.yaml.in/yaml/v3"

	"github.com/gatehouse/gatehouse/internal/jsonpath"
)

// RouteBudget is a route's cost budget: what each tier may spend — tokens,
// bytes, credits — per window, where the cost of a request is known only
// once its response is done. ext_proc reserves an estimate against every
// window when the request comes (after ext_authz has named the caller's
// tier), refuses with 429 what does not fit, and settles the actual cost
// from the response when it ends (docs/budgets.md).
type RouteBudget struct {
	// Name names the budget in RateLimit-Policy, metrics and its counters.
	// Routes naming the same budget share its counters (one monthly budget
	// over a chat and a completion route).
	Name string `yaml:"name"`
	// Unit is what the budget counts (tokens, bytes, credits), reported in
	// the RateLimit-Policy header.
	Unit string `yaml:"unit" default:"tokens"`
	// Tiers are the windows of each tier; every window must have room for
	// a request's reservation. An empty list makes a tier unlimited.
	Tiers map[string][]BudgetLimit `yaml:"tiers,omitempty"`
	// Default are the windows of a tier not in Tiers. Absent: such a tier
	// is not limited by the budget.
	Default []BudgetLimit `yaml:"default,omitempty"`
	// KeyBy is whom a budget is kept for: subject (each caller), tier (one
	// budget shared by the tier) or route (one for everybody).
	KeyBy KeyBy `yaml:"keyBy" default:"subject"`
	// TimeZone aligns calendar windows (months start on the 1st at
	// midnight in this zone). Default: ratelimit.timeZone, else UTC.
	TimeZone TimeZone `yaml:"timeZone,omitempty"`
	// Reserve is the estimate reserved when the request comes.
	Reserve BudgetReserve `yaml:"reserve"`
	// Cost is where the actual cost is read from the response.
	Cost BudgetCost `yaml:"cost"`
	// Hold is how long a reservation waits for its settlement. One whose
	// replica died before settling expires then, and the next reservation
	// of the same budget reconciles it by OnExpiry. Longer than the
	// longest response (a stream) of the route.
	Hold Duration `yaml:"hold" default:"10m"`
	// OnExpiry is what an expired reservation costs: charge (its estimate
	// stays spent: the upstream probably did the work) or refund.
	OnExpiry BudgetExpiry `yaml:"onExpiry" default:"charge"`
	// FailureMode is the answer when the budget store cannot be reached:
	// closed refuses the request (503), open lets it through unreserved
	// (its cost is then not counted).
	FailureMode FailureMode `yaml:"failureMode" default:"closed"`
	// MaxBodySize bounds the request body read for the estimate and the
	// JSON response body read for the cost (an event stream is read as it
	// passes, whatever its size).
	MaxBodySize ByteSize `yaml:"maxBodySize" default:"1MiB"`
	// Audit writes one audit line per settlement (budget.settle).
	Audit bool `yaml:"audit" default:"true"`
}

// BudgetLimit is one window of a tier's budget.
type BudgetLimit struct {
	// Name names the window in RateLimit-Policy and metrics; by default
	// the budget's name and the window ("tokens-1moc").
	Name string `yaml:"name,omitempty"`
	// Amount is what the window admits, in the budget's unit.
	Amount uint64 `yaml:"amount"`
	// Per is the window: second to month, or a count of one ("5 minutes").
	Per Window `yaml:"per"`
	// Calendar aligns a day, week or month window to the calendar in the
	// budget's time zone (a billing month) instead of the Unix epoch.
	Calendar bool `yaml:"calendar,omitempty"`
}

// BudgetReserve is how much a request reserves: Header or JSONPath when
// the request has it, else Fixed; then raised to Min and capped at Max.
type BudgetReserve struct {
	// Fixed is the estimate of a request without Header or JSONPath.
	Fixed uint64 `yaml:"fixed,omitempty"`
	// Header is a request header holding the estimate.
	Header string `yaml:"header,omitempty"`
	// JSONPath reads the estimate from the JSON request body
	// ($.max_tokens); the body is then buffered up to maxBodySize.
	JSONPath JSONPath `yaml:"jsonPath,omitempty"`
	// Min is the least a request reserves, whatever it declares.
	Min uint64 `yaml:"min,omitempty"`
	// Max caps the estimate. An estimate is never more than the tier's
	// smallest window either: one larger could never be admitted.
	Max uint64 `yaml:"max,omitempty"`
}

// BudgetCost is where the actual cost of a request is read.
type BudgetCost struct {
	// From is header (a response header), json (the number at JSONPath in
	// a JSON response, or in the last event of a text/event-stream that
	// has one) or bytes (the response body's length).
	From CostSource `yaml:"from"`
	// Header is the response header holding the cost (from: header).
	Header string `yaml:"header,omitempty"`
	// JSONPath is where the cost is in the body (from: json), as in
	// $.usage.total_tokens.
	JSONPath JSONPath `yaml:"jsonPath,omitempty"`
	// Unknown is what a successful response whose cost cannot be read
	// costs (a stream cut short before its usage event, a body over
	// maxBodySize): reservation (the estimate) or zero. An error response
	// (status 400 and above) without a cost costs zero.
	Unknown UnknownCost `yaml:"unknown" default:"reservation"`
}

// CostSource is where a budget's cost is read.
type CostSource string

// Cost sources.
const (
	CostHeader CostSource = "header"
	CostJSON   CostSource = "json"
	CostBytes  CostSource = "bytes"
)

// EnumValues implements Enum.
func (CostSource) EnumValues() []string { return []string{"header", "json", "bytes"} }

// EnumNoun implements Enum.
func (CostSource) EnumNoun() string { return "a cost source" }

// UnknownCost is what a response of unknown cost is charged.
type UnknownCost string

// Unknown cost rules.
const (
	UnknownReservation UnknownCost = "reservation"
	UnknownZero        UnknownCost = "zero"
)

// EnumValues implements Enum.
func (UnknownCost) EnumValues() []string { return []string{"reservation", "zero"} }

// EnumNoun implements Enum.
func (UnknownCost) EnumNoun() string { return "an unknown-cost rule" }

// BudgetExpiry is what an expired reservation costs.
type BudgetExpiry string

// Expiry rules.
const (
	ExpiryCharge BudgetExpiry = "charge"
	ExpiryRefund BudgetExpiry = "refund"
)

// EnumValues implements Enum.
func (BudgetExpiry) EnumValues() []string { return []string{"charge", "refund"} }

// EnumNoun implements Enum.
func (BudgetExpiry) EnumNoun() string { return "an expiry rule" }

// JSONPath is a JSON path such as $.usage.total_tokens, parsed once here.
type JSONPath struct{ jsonpath.Path }

// ParseJSONPath checks and parses s.
func ParseJSONPath(s string) (JSONPath, error) {
	p, err := jsonpath.Parse(s)
	return JSONPath{p}, err
}

func (p JSONPath) source() string { return p.String() }

// UnmarshalYAML implements yaml.Unmarshaler.
func (p *JSONPath) UnmarshalYAML(n *yaml.Node) error {
	return decodeScalar(n, p, "a JSON path such as $.usage.total_tokens", ParseJSONPath)
}

// MarshalYAML renders the path as written.
func (p JSONPath) MarshalYAML() (any, error) { return p.String(), nil }

// MaxBudgetAmount bounds every amount and estimate (ratelimit/budget's
// MaxAmount): sums stay exact in Redis Lua's numbers.
const MaxBudgetAmount = 1 << 50

// BudgetNeeds is the ext_proc processing the budget filter needs on a
// route (xds wires it; extproc asks for the same in its mode overrides).
type BudgetNeeds struct {
	Enabled bool
	// RequestBody is buffered when the estimate is read from it.
	RequestBody BodyMode
	// ResponseBody is streamed when the cost is read from it (chunks pass
	// on as they come: an event stream is never held back).
	ResponseBody BodyMode
	// MaxBodyBytes bounds the buffered request body.
	MaxBodyBytes uint32
}

// BudgetNeeds says what the budget filter needs of Envoy for route r.
func (r *Route) BudgetNeeds(c *Config) BudgetNeeds {
	b := r.Budget
	if b == nil || c.ExtProc == nil {
		return BudgetNeeds{RequestBody: BodyNone, ResponseBody: BodyNone}
	}
	n := BudgetNeeds{Enabled: true, RequestBody: BodyNone, ResponseBody: BodyNone}
	if !b.Reserve.JSONPath.IsZero() {
		n.RequestBody = BodyBuffered
		n.MaxBodyBytes = uint32(min(int64(b.MaxBodySize), math.MaxUint32))
	}
	if b.Cost.From == CostJSON || b.Cost.From == CostBytes {
		n.ResponseBody = BodyStreamed
	}
	return n
}
