package quota

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"

	"github.com/gatehouse/gatehouse/internal/config"
)

const nativeConfig = `apiVersion: gatehouse/v1
ratelimit:
  tiers:
    gold:
      - {requests: 20, per: second}
      - {requests: 10000, per: day, calendar: true}
    anonymous:
      - {requests: 1, per: second}
routes:
  - id: orders
    match: {prefix: /orders}
    ratelimit:
      tiers:
        gold:
          - {requests: 50, per: second, algorithm: gcra, burst: 100}
        silver: []
      default:
        - {requests: 5, per: "5 minutes", algorithm: sliding}
  - id: reports
    match: {prefix: /reports}
    ratelimit:
      keyBy: tenant
      headers: [{header: x-tenant, key: tenant}]
  - id: public
    match: {prefix: /public}
    ratelimit: {disabled: true}
  - id: shared
    match: {prefix: /shared}
    ratelimit: {keyBy: tier}
`

func compileYAML(t *testing.T, y string) (*Snapshot, error) {
	t.Helper()
	cfg, err := config.LoadBytes("<test>", []byte(y), config.LoadOptions{})
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return Compile(cfg)
}

func desc(kv ...string) *ratelimitv3.RateLimitDescriptor {
	d := &ratelimitv3.RateLimitDescriptor{}
	for i := 0; i+1 < len(kv); i += 2 {
		d.Entries = append(d.Entries, &ratelimitv3.RateLimitDescriptor_Entry{Key: kv[i], Value: kv[i+1]})
	}
	return d
}

func TestNativeMatch(t *testing.T) {
	snap, err := compileYAML(t, nativeConfig)
	if err != nil {
		t.Fatal(err)
	}
	dom, ok := snap.Domain("gatehouse")
	if !ok {
		t.Fatal("no gatehouse domain")
	}
	tests := []struct {
		name      string
		d         *ratelimitv3.RateLimitDescriptor
		rule      string
		limits    string
		identity  string
		miss      MissReason
		wantError bool
	}{
		{"route tier override", desc("route", "orders", "tier", "gold", "subject", "alice"), "gatehouse/orders/gold", "gold-1s-gcra", "gatehouse|orders|gold|subject=alice", Hit, false},
		{"component tier on route", desc("route", "reports", "tier", "gold", "subject", "alice", "tenant", "acme"), "gatehouse/reports/gold", "gold-1s,gold-1d-calendar", "gatehouse|reports|gold|tenant=acme", Hit, false},
		{"default of the route", desc("route", "orders", "tier", "bronze", "subject", "bob"), "gatehouse/orders/*", "default-5m-sliding", "gatehouse|orders|bronze|subject=bob", Hit, false},
		{"unlimited tier on route", desc("route", "orders", "tier", "silver", "subject", "bob"), "", "", "", NoRule, false},
		{"missing tier is anonymous", desc("route", "reports", "subject", "10.0.0.1"), "gatehouse/reports/anonymous", "anonymous-1s", "gatehouse|reports|anonymous|tenant=", Hit, false},
		{"tier without limit and no default", desc("route", "reports", "tier", "bronze", "subject", "x"), "", "", "", NoRule, false},
		{"disabled route", desc("route", "public", "tier", "gold", "subject", "x"), "", "", "", NoRule, false},
		{"unknown route", desc("route", "nope", "tier", "gold"), "", "", "", UnknownRoute, false},
		{"no route entry", desc("tier", "gold", "subject", "x"), "", "", "", NoRouteEntry, false},
		{"shared by tier", desc("route", "shared", "tier", "gold", "subject", "x"), "gatehouse/shared/gold", "gold-1s,gold-1d-calendar", "gatehouse|shared|gold", Hit, false},
		{"escaped separators", desc("route", "orders", "tier", "gold", "subject", "a|b=c\\"), "gatehouse/orders/gold", "gold-1s-gcra", `gatehouse|orders|gold|subject=a\|b\=c\\`, Hit, false},
		{"duplicate subject", desc("route", "orders", "tier", "gold", "subject", "a", "subject", "b"), "", "", "", NoRule, true},
		{"duplicate tier", desc("route", "orders", "tier", "gold", "tier", "free"), "", "", "", NoRule, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rule, ident, miss, err := dom.Match(tt.d, nil)
			if tt.wantError {
				if !errors.Is(err, ErrBadDescriptor) {
					t.Fatalf("Match(%s) error = %v; want ErrBadDescriptor", entriesString(tt.d), err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if miss != tt.miss {
				t.Errorf("Match(%s) miss = %v; want %v", entriesString(tt.d), miss, tt.miss)
			}
			if rule == nil {
				if tt.rule != "" {
					t.Errorf("Match(%s) = no rule; want %s", entriesString(tt.d), tt.rule)
				}
				return
			}
			var names []string
			for _, l := range rule.Limits {
				names = append(names, l.Name)
			}
			if rule.ID != tt.rule || strings.Join(names, ",") != tt.limits || string(ident) != tt.identity {
				t.Errorf("Match(%s) = %s [%s] %q; want %s [%s] %q", entriesString(tt.d), rule.ID, strings.Join(names, ","), ident, tt.rule, tt.limits, tt.identity)
			}
		})
	}
}

// TestNativeFailureModes: each tier's rule carries the tier's failure
// mode on its route — open for verified tiers and closed for anonymous by
// default, the route's own modes over the component's — and a tier that
// takes the route's default limits but has a mode of its own (anonymous
// always) has a rule of its own on the same counters.
func TestNativeFailureModes(t *testing.T) {
	snap, err := compileYAML(t, `apiVersion: gatehouse/v1
ratelimit:
  tiers:
    gold: [{requests: 20, per: second}]
  default: [{requests: 5, per: second}]
  failureMode: {tiers: {bronze: closed}}
routes:
  - {id: plain, match: {prefix: /p}}
  - {id: strict, match: {prefix: /s}, ratelimit: {failureMode: closed}}
  - {id: lenient, match: {prefix: /l}, ratelimit: {failureMode: {anonymous: open, tiers: {gold: closed}}}}
`)
	if err != nil {
		t.Fatal(err)
	}
	dom, _ := snap.Domain("gatehouse")
	tests := []struct {
		route, tier string
		rule        string
		failOpen    bool
		identity    string
	}{
		{"plain", "gold", "gatehouse/plain/gold", true, "gatehouse|plain|gold|subject=s"},
		{"plain", "silver", "gatehouse/plain/*", true, "gatehouse|plain|silver|subject=s"},
		{"plain", "bronze", "gatehouse/plain/bronze", false, "gatehouse|plain|bronze|subject=s"},
		{"plain", "anonymous", "gatehouse/plain/anonymous", false, "gatehouse|plain|anonymous|subject=s"},
		{"plain", "", "gatehouse/plain/anonymous", false, "gatehouse|plain|anonymous|subject=s"},
		{"strict", "gold", "gatehouse/strict/gold", false, "gatehouse|strict|gold|subject=s"},
		{"strict", "silver", "gatehouse/strict/*", false, "gatehouse|strict|silver|subject=s"},
		{"strict", "anonymous", "gatehouse/strict/anonymous", false, "gatehouse|strict|anonymous|subject=s"},
		{"lenient", "gold", "gatehouse/lenient/gold", false, "gatehouse|lenient|gold|subject=s"},
		{"lenient", "bronze", "gatehouse/lenient/bronze", false, "gatehouse|lenient|bronze|subject=s"},
		{"lenient", "anonymous", "gatehouse/lenient/anonymous", true, "gatehouse|lenient|anonymous|subject=s"},
	}
	for _, tt := range tests {
		d := desc("route", tt.route, "subject", "s")
		if tt.tier != "" {
			d = desc("route", tt.route, "tier", tt.tier, "subject", "s")
		}
		rule, ident, _, err := dom.Match(d, nil)
		if err != nil || rule == nil {
			t.Fatalf("Match(%s) = %v, %v", entriesString(d), rule, err)
		}
		if rule.ID != tt.rule || rule.FailOpen != tt.failOpen || string(ident) != tt.identity {
			t.Errorf("Match(%s) = %s, fail open %v, %q; want %s, %v, %q", entriesString(d), rule.ID, rule.FailOpen, ident, tt.rule, tt.failOpen, tt.identity)
		}
		if want := tt.rule[strings.LastIndexByte(tt.rule, '/')+1:]; rule.Tier != want {
			t.Errorf("Match(%s).Tier = %q; want %q", entriesString(d), rule.Tier, want)
		}
	}
}

func TestNativePolicyAndProto(t *testing.T) {
	snap, err := compileYAML(t, nativeConfig)
	if err != nil {
		t.Fatal(err)
	}
	dom, _ := snap.Domain("gatehouse")
	rule, _, _, _ := dom.Match(desc("route", "reports", "tier", "gold", "subject", "a"), nil)
	if want := `"gold-1s";q=20;w=1, "gold-1d-calendar";q=10000;w=86400`; rule.Policy != want {
		t.Errorf("Policy = %s; want %s", rule.Policy, want)
	}
	rule, _, _, _ = dom.Match(desc("route", "orders", "tier", "x", "subject", "a"), nil)
	if p := rule.Limits[0].Proto; p.RequestsPerUnit != 5 || p.Unit.String() != "UNKNOWN" {
		t.Errorf("5-minute limit proto = %v; want 5 per UNKNOWN unit (no proto unit is 5 minutes)", p)
	}
}

func TestCompileErrors(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	clash := filepath.Join(dir, "clash.yaml")
	os.WriteFile(good, []byte("domain: mongo\ndescriptors:\n  - key: database\n    rate_limit: {unit: second, requests_per_unit: 5}\n"), 0o644)
	os.WriteFile(clash, []byte("domain: gatehouse\ndescriptors: []\n"), 0o644)
	tests := []struct {
		name, yaml, want string
	}{
		{"missing file", "apiVersion: gatehouse/v1\nratelimit: {envoyConfigs: [" + filepath.Join(dir, "nope.yaml") + "]}\n", "ratelimit.envoyConfigs[0]: " + filepath.Join(dir, "nope.yaml") + ": no such file"},
		{"unknown domain override", "apiVersion: gatehouse/v1\nratelimit: {envoyConfigs: [" + good + "], domains: {mongoo: {failureMode: open}}}\n", `ratelimit.domains.mongoo: "mongoo" is not a domain of envoyConfigs (they define: mongo)`},
		{"reserved domain", "apiVersion: gatehouse/v1\nratelimit: {tiers: {gold: [{requests: 1, per: second}]}, envoyConfigs: [" + clash + "]}\nroutes: [{id: a, match: {prefix: /}}]\n", `domain "gatehouse" of ` + clash + ` is gatehouse's own domain`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := compileYAML(t, tt.yaml)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Compile = %v; want %q", err, tt.want)
			}
		})
	}
	// Without route quotas the name gatehouse is free for an envoy domain.
	if _, err := compileYAML(t, "apiVersion: gatehouse/v1\nratelimit: {envoyConfigs: ["+clash+"]}\n"); err != nil {
		t.Errorf("envoy domain gatehouse without route quotas: %v", err)
	}
}
