package config

import (
	"slices"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/timeunit"
)

func TestRateLimitValidation(t *testing.T) {
	head := "apiVersion: gatehouse/v1\nratelimit: {}\nroutes:\n  - id: a\n    match: {prefix: /a}\n  - id: b\n    match: {prefix: /b}\n  - id: c\n    match: {prefix: /c}\n    ratelimit:\n"
	tests := []struct {
		name, yaml, want string
	}{
		{"bad unit", head + "      tiers:\n        gold:\n          - {requests: 20, per: fortnight}\n",
			`<test>:13: routes[2].ratelimit.tiers.gold[0].per: "fortnight" is not a unit; use second|minute|hour|day|week|month`},
		{"bad unit with a count", head + "      tiers:\n        gold:\n          - {requests: 20, per: 2 fortnights}\n",
			`routes[2].ratelimit.tiers.gold[0].per: "fortnight" is not a unit; use second|minute|hour|day|week|month`},
		{"bad count", head + "      tiers:\n        gold:\n          - {requests: 20, per: 0 minutes}\n",
			`"0 minutes" is not a window; the count must be a whole number from 1 to 1000`},
		{"missing requests", head + "      default:\n        - {per: second}\n",
			"routes[2].ratelimit.default[0].requests: is required and must be at least 1"},
		{"missing per", head + "      default:\n        - {requests: 3}\n",
			"routes[2].ratelimit.default[0].per: is required"},
		{"calendar on minutes", head + "      default:\n        - {requests: 3, per: minute, calendar: true}\n",
			"routes[2].ratelimit.default[0].calendar: applies to day, week and month windows, not minute"},
		{"calendar gcra", head + "      default:\n        - {requests: 3, per: day, calendar: true, algorithm: gcra}\n",
			"calendar: applies to fixed and sliding windows"},
		{"burst without gcra", head + "      default:\n        - {requests: 3, per: second, burst: 5}\n",
			"routes[2].ratelimit.default[0].burst: applies to gcra limits only (this one is fixed)"},
		{"bucket deeper than int64 microseconds", head + "      default:\n        - {requests: 1, per: 1000 days, burst: 1000000000000, algorithm: gcra}\n",
			"burst: 1000000000000 at 1 per 1000 days takes more than 5 years to refill"},
		{"bucket that takes ages to refill", head + "      default:\n        - {requests: 1, per: day, burst: 10000, algorithm: gcra}\n",
			"routes[2].ratelimit.default[0].burst: 10000 at 1 per day takes more than 5 years to refill"},
		{"bad algorithm", head + "      algorithm: leaky\n",
			`routes[2].ratelimit.algorithm: "leaky" is not an algorithm; use fixed|sliding|gcra`},
		{"duplicate window", head + "      default:\n        - {requests: 3, per: second}\n        - {requests: 5, per: second}\n",
			"routes[2].ratelimit.default[1]: same window and algorithm as [0]"},
		{"tier that authz never hands out", head + "      tiers:\n        \"gold plan\":\n          - {requests: 20, per: second}\n",
			`routes[2].ratelimit.tiers["gold plan"]: "gold plan" is not a tier`},
		{"bad keyBy", head + "      keyBy: tenant\n",
			`routes[2].ratelimit.keyBy: "tenant" is not a key of this route`},
		{"reserved header key", head + "      headers: [{header: x-sub, key: subject}]\n",
			`routes[2].ratelimit.headers[0].key: "subject" is a key gatehouse sets itself`},
		{"header key xds sets", head + "      headers: [{header: x-mode, key: failure_mode}]\n",
			`routes[2].ratelimit.headers[0].key: "failure_mode" is a key gatehouse sets itself`},
		{"upper-case header", head + "      headers: [{header: X-Tenant, key: tenant}]\n",
			`routes[2].ratelimit.headers[0].header: "X-Tenant" is not a header name`},
		{"bad time zone", "apiVersion: gatehouse/v1\nratelimit: {timeZone: Mars/Olympus}\n",
			`ratelimit.timeZone: "Mars/Olympus" is not a time zone`},
		{"bad failure mode", "apiVersion: gatehouse/v1\nratelimit: {failureMode: maybe}\n",
			`ratelimit.failureMode: "maybe" is not a failure mode; use open|closed`},
		{"bad failure mode of a tier", "apiVersion: gatehouse/v1\nratelimit: {failureMode: {tiers: {gold: shut}}}\n",
			`<test>:2: ratelimit.failureMode.tiers.gold: "shut" is not a failure mode; use open|closed`},
		{"bad route failure mode", head + "      failureMode: maybe\n",
			`<test>:11: routes[2].ratelimit.failureMode: "maybe" is not a failure mode; use open|closed`},
		{"anonymous among the failure tiers", head + "      failureMode: {tiers: {anonymous: open}}\n",
			`routes[2].ratelimit.failureMode.tiers.anonymous: the anonymous tier has a field of its own; write failureMode.anonymous`},
		{"failure tier that authz never hands out", "apiVersion: gatehouse/v1\nratelimit: {failureMode: {tiers: {\"gold plan\": open}}}\n",
			`ratelimit.failureMode.tiers["gold plan"]: "gold plan" is not a tier`},
		{"unknown failure mode field", "apiVersion: gatehouse/v1\nratelimit: {failureMode: {verified: open}}\n",
			`ratelimit.failureMode.verified: unknown field "verified"; valid fields: anonymous, default, tiers`},
		{"zero timeout", "apiVersion: gatehouse/v1\nratelimit: {store: {timeout: 0s}}\n",
			"ratelimit.store.timeout: must be more than 0s"},
		{"requests too large", head + "      default:\n        - {requests: 2000000000000, per: second}\n",
			"requests: 2000000000000 is too large"},
		{"component keyBy", "apiVersion: gatehouse/v1\nratelimit: {keyBy: tenant}\n",
			`ratelimit.keyBy: "tenant" is not a key; use subject, route or tier`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadBytes("<test>", []byte(tt.yaml), LoadOptions{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("LoadBytes error = %v; want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestRateLimitValidConfig(t *testing.T) {
	y := `apiVersion: gatehouse/v1
ratelimit:
  tiers:
    gold:
      - {requests: 20, per: second}
      - {requests: 10000, per: day, calendar: true}
      - {requests: 200000, per: month, calendar: true}
    anonymous:
      - {requests: 5, per: "5 minutes", algorithm: sliding}
  timeZone: Europe/Berlin
routes:
  - id: orders
    match: {prefix: /orders}
    ratelimit:
      keyBy: tenant
      headers: [{header: x-tenant, key: tenant}]
      tiers:
        gold: [{requests: 50, per: second, algorithm: gcra, burst: 100}]
        free: []
  - id: public
    match: {prefix: /public}
    ratelimit: {disabled: true}
  - id: plain
    match: {prefix: /}
`
	cfg, err := LoadBytes("<test>", []byte(y), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rl := cfg.RateLimit
	if rl.KeyBy != "subject" || rl.Algorithm != AlgorithmFixed || rl.FailureMode.Default != FailOpen || rl.FailureMode.Anonymous != FailClosed || rl.Store.BatchSize != 128 {
		t.Errorf("defaults = %+v", rl)
	}
	if w := rl.Tiers["anonymous"][0].Per; w != (Window{Count: 5, Unit: timeunit.Minute}) || w.String() != "5 minutes" {
		t.Errorf("window = %+v (%s); want 5 minutes", w, w)
	}
	needs := map[string]RateLimitNeeds{}
	for i := range cfg.Routes {
		needs[cfg.Routes[i].ID] = cfg.Routes[i].RateLimitNeeds(cfg)
	}
	if n := needs["orders"]; !n.Enabled || len(n.HeaderEntries) != 1 || n.HeaderEntries[0] != (HeaderDescriptor{Header: "x-tenant", Key: "tenant"}) {
		t.Errorf("orders needs %+v", n)
	}
	if n := needs["public"]; n.Enabled {
		t.Errorf("disabled route needs %+v", n)
	}
	if n := needs["plain"]; !n.Enabled {
		t.Errorf("a route without a section gets the component's tiers; needs %+v", n)
	}
	e := cfg.Routes[0].EffectiveRateLimit(cfg)
	if len(e.Tiers["gold"]) != 1 || len(e.Tiers["free"]) != 0 || len(e.Tiers["anonymous"]) != 1 || e.KeyBy != "tenant" {
		t.Errorf("effective orders = %+v", e)
	}
	out, err := cfg.Redacted()
	if err != nil || !strings.Contains(string(out), "per: 5 minutes") {
		t.Errorf("Redacted renders the window as written: %v\n%s", err, out)
	}
}

// TestRateLimitFailureModes: verified tiers fail open and anonymous
// closed by default; one value sets every tier; a route's own modes win
// over the component's; and Envoy's modes (RateLimitNeeds) are the same
// but open wherever nothing would be enforced.
func TestRateLimitFailureModes(t *testing.T) {
	const base = `apiVersion: gatehouse/v1
ratelimit:
  tiers:
    gold: [{requests: 5, per: second}]
    free: [{requests: 1, per: second}]
    anonymous: [{requests: 1, per: minute}]
  default: [{requests: 2, per: second}]
  FAILURE
routes:
  - {id: plain, match: {prefix: /plain}}
  - {id: closed, match: {prefix: /closed}, ratelimit: {failureMode: closed}}
  - {id: open, match: {prefix: /open}, ratelimit: {failureMode: open}}
  - {id: verified-closed, match: {prefix: /vc}, ratelimit: {failureMode: {default: closed}}}
  - {id: gold-closed, match: {prefix: /gc}, ratelimit: {failureMode: {tiers: {gold: closed}}}}
  - {id: anon-unlimited, match: {prefix: /au}, ratelimit: {tiers: {anonymous: []}}}
  - {id: shadow, match: {prefix: /sh}, ratelimit: {shadow: true}}
  - id: no-default
    match: {prefix: /nd}
    ratelimit: {default: [], failureMode: {default: closed, anonymous: open}}
`
	type want struct {
		modes       map[string]FailureMode // tier → the limiter's mode ("x": a tier named nowhere)
		envoy       FailureMode
		envoyExcept []string
	}
	open, closed := FailOpen, FailClosed
	tests := []struct {
		name, failure string
		routes        map[string]want
	}{
		{"defaults", "", map[string]want{
			"plain":           {map[string]FailureMode{"gold": open, "x": open, "anonymous": closed}, open, []string{"anonymous"}},
			"closed":          {map[string]FailureMode{"gold": closed, "x": closed, "anonymous": closed}, closed, nil},
			"open":            {map[string]FailureMode{"gold": open, "x": open, "anonymous": open}, open, nil},
			"verified-closed": {map[string]FailureMode{"gold": closed, "x": closed, "anonymous": closed}, closed, nil},
			"gold-closed":     {map[string]FailureMode{"gold": closed, "free": open, "x": open, "anonymous": closed}, open, []string{"anonymous", "gold"}},
			// The limiter keeps its mode; Envoy has nothing to enforce for
			// a tier without limits.
			"anon-unlimited": {map[string]FailureMode{"gold": open, "anonymous": closed}, open, nil},
			"shadow":         {map[string]FailureMode{"gold": open, "anonymous": closed}, open, nil},
			// Tiers named nowhere are unlimited here: open for Envoy.
			"no-default": {map[string]FailureMode{"gold": closed, "x": closed, "anonymous": open}, open, []string{"free", "gold"}},
		}},
		{"all closed in one line", "failureMode: closed", map[string]want{
			"plain": {map[string]FailureMode{"gold": closed, "x": closed, "anonymous": closed}, closed, nil},
			"open":  {map[string]FailureMode{"gold": open, "anonymous": open}, open, nil},
		}},
		{"all open in one line", "failureMode: open", map[string]want{
			"plain":       {map[string]FailureMode{"gold": open, "anonymous": open}, open, nil},
			"gold-closed": {map[string]FailureMode{"gold": closed, "free": open, "anonymous": open}, open, []string{"gold"}},
		}},
		{"per tier", "failureMode: {default: closed, tiers: {gold: open}}", map[string]want{
			"plain":           {map[string]FailureMode{"gold": open, "free": closed, "x": closed, "anonymous": closed}, closed, []string{"gold"}},
			"verified-closed": {map[string]FailureMode{"gold": closed, "free": closed, "anonymous": closed}, closed, nil},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := LoadBytes("<test>", []byte(strings.Replace(base, "FAILURE", tt.failure, 1)), LoadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for i := range cfg.Routes {
				r := &cfg.Routes[i]
				w, ok := tt.routes[r.ID]
				if !ok {
					continue
				}
				e := r.EffectiveRateLimit(cfg)
				for tier, mode := range w.modes {
					if got := e.FailureMode.For(tier); got != mode {
						t.Errorf("%s: FailureMode.For(%q) = %q; want %q", r.ID, tier, got, mode)
					}
				}
				n := r.RateLimitNeeds(cfg)
				if n.FailureMode != w.envoy || !slices.Equal(n.Except, w.envoyExcept) {
					t.Errorf("%s: Envoy's failure modes = %q except %q; want %q except %q", r.ID, n.FailureMode, n.Except, w.envoy, w.envoyExcept)
				}
			}
		})
	}
}

func TestRateLimitNeedsWithoutComponent(t *testing.T) {
	cfg, err := LoadBytes("<test>", []byte("apiVersion: gatehouse/v1\nroutes:\n  - id: a\n    match: {prefix: /}\n    ratelimit: {default: [{requests: 1, per: second}]}\n"), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n := cfg.Routes[0].RateLimitNeeds(cfg); n.Enabled {
		t.Errorf("needs %+v without a ratelimit section", n)
	}
	if len(cfg.Warnings) != 1 || !strings.Contains(cfg.Warnings[0].Error(), "no ratelimit section") {
		t.Errorf("warnings = %v", cfg.Warnings)
	}
}

// FuzzParseWindow: any string is a window or an error, never a panic, and
// a window renders to a string that parses back to itself.
func FuzzParseWindow(f *testing.F) {
	for _, s := range []string{"second", "5 minutes", "1 day", "2 weeks", "1000 months", "0 hours", "fortnight", " 3  hours ", "-1 minute", "99999999999 seconds"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		w, err := ParseWindow(s)
		if err != nil {
			return
		}
		if w.Count < 1 || w.Count > MaxWindowCount || w.Seconds() <= 0 {
			t.Fatalf("ParseWindow(%q) = %+v", s, w)
		}
		back, err := ParseWindow(w.String())
		if err != nil || back != w {
			t.Fatalf("ParseWindow(%q) = %+v renders %q, which parses to %+v, %v", s, w, w.String(), back, err)
		}
	})
}

func TestRateLimitTimeoutAgainstEnvoy(t *testing.T) {
	load := func(body string) error {
		_, err := LoadBytes("gh.yaml", []byte("apiVersion: gatehouse/v1\n"+body), LoadOptions{})
		return err
	}
	err := load("ratelimit: {store: {timeout: 300ms}}\nxds: {}\n")
	want := `gh.yaml:3: xds.services.ratelimitTimeout: 250ms must be longer than ratelimit.store.timeout (300ms)`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("LoadBytes() = %v; want %q", err, want)
	}
	if err := load("ratelimit: {}\nxds: {}\n"); err != nil {
		t.Fatalf("the defaults must satisfy the rule: %v", err)
	}
}
