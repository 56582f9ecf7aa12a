package quota

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	refconfig "github.com/envoyproxy/ratelimit/src/config"
	reflimiter "github.com/envoyproxy/ratelimit/src/limiter"

	"github.com/gatehouse/gatehouse/internal/config"
)

// FuzzEnvoyConfig parses arbitrary envoy config files: gatehouse must
// refuse exactly what the reference loader refuses (with an error, where
// the reference panics), and answer descriptors as the reference does.
func FuzzEnvoyConfig(f *testing.F) {
	dir := refTestdata(f)
	names, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, "key1", "value1", "subkey1", "x")
	}
	f.Add([]byte("domain: d\ndescriptors:\n  - key: a\n    value: b*\n    descriptors:\n      - key: c\n        rate_limit: {unit: second, requests_per_unit: 1}\n"), "a", "bb", "c", "")
	if b, err := os.ReadFile("testdata/stats.yaml"); err == nil {
		f.Add(b, "route", "r1", "method", "GET")
		f.Add(b, "files", "files/a", "", "")
		f.Add(b, "agent", "bot7", "x", "y")
	}
	f.Fuzz(func(t *testing.T, data []byte, k1, v1, k2, v2 string) {
		// Reference mode: the keys and stats keys are the reference's too.
		rl := &config.RateLimit{FailureMode: config.RateLimitFailureModes{Default: config.FailClosed, Anonymous: config.FailClosed}, Reference: &config.RateLimitReference{}}
		var rules []*Rule
		add := func(r *Rule) *Rule { r.Index = len(rules); rules = append(rules, r); return r }
		files := []EnvoyFile{{Name: "f.yaml", Data: data}}
		doms, err := compileEnvoy(files, rl, add)

		var ref refconfig.RateLimitConfig
		refPanicked := func() (p bool) {
			defer func() { p = recover() != nil }()
			root := refconfig.ConfigFileContentToYaml("f.yaml", string(data))
			ref = refconfig.NewRateLimitConfigImpl([]refconfig.RateLimitConfigToLoad{{Name: "f.yaml", ConfigYaml: root}}, nullStats(), false)
			return false
		}()
		if refPanicked != (err != nil) {
			t.Fatalf("reference refused=%v, gatehouse err=%v", refPanicked, err)
		}
		if err != nil {
			return
		}
		for _, d := range doms {
			for _, desc := range []*ratelimitv3.RateLimitDescriptor{
				{Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: k1, Value: v1}}},
				{Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: k1, Value: v1}, {Key: k2, Value: v2}}},
			} {
				want := ref.GetLimit(context.Background(), d.Name, desc)
				rule, ident, _, err := d.Match(desc, nil)
				if err != nil {
					t.Fatal(err)
				}
				if (want == nil) != (rule == nil) {
					t.Fatalf("Match(%v) = %v; reference %v", entriesString(desc), rule, want)
				}
				if want == nil {
					continue
				}
				if ruleSummary(rule) != refSummary(want) {
					t.Fatalf("Match(%v) = %s; reference %s", entriesString(desc), ruleSummary(rule), refSummary(want))
				}
				if want.Unlimited {
					continue
				}
				keys := reflimiter.NewCacheKeyGenerator("")
				if got, wantKey := string(ident)+"0", keys.GenerateCacheKey(d.Name, desc, want, 0).Key; got != wantKey {
					t.Fatalf("Match(%v) key %q; reference %q", entriesString(desc), got, wantKey)
				}
				if got := d.StatsKey(rule, desc.Entries); got != want.FullKey {
					t.Fatalf("StatsKey(%v) = %q; reference %q", entriesString(desc), got, want.FullKey)
				}
			}
		}
	})
}
