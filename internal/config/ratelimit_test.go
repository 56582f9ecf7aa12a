package config

import (
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
		{"upper-case header", head + "      headers: [{header: X-Tenant, key: tenant}]\n",
			`routes[2].ratelimit.headers[0].header: "X-Tenant" is not a header name`},
		{"bad time zone", "apiVersion: gatehouse/v1\nratelimit: {timeZone: Mars/Olympus}\n",
			`ratelimit.timeZone: "Mars/Olympus" is not a time zone`},
		{"bad failure mode", "apiVersion: gatehouse/v1\nratelimit: {failureMode: maybe}\n",
			`ratelimit.failureMode: "maybe" is not a failure mode; use open|closed`},
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
	if rl.KeyBy != "subject" || rl.Algorithm != AlgorithmFixed || rl.FailureMode != FailClosed || rl.Store.BatchSize != 128 {
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
