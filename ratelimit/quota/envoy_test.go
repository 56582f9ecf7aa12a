package quota

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	refconfig "github.com/envoyproxy/ratelimit/src/config"
	reflimiter "github.com/envoyproxy/ratelimit/src/limiter"

	"github.com/gatehouse/gatehouse/internal/config"
)

const refModule = "github.com/envoyproxy/ratelimit"

var (
	refDirOnce sync.Once
	refDirPath string
	refDirErr  error
)

// refTestdata returns the directory of envoyproxy/ratelimit's own config
// test cases, in the module cache (the module zip holds its test/ tree).
func refTestdata(t testing.TB) string {
	t.Helper()
	refDirOnce.Do(func() {
		out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", refModule).Output()
		if err != nil {
			refDirErr = fmt.Errorf("go list -m %s: %v", refModule, err)
			return
		}
		refDirPath = filepath.Join(strings.TrimSpace(string(out)), "test", "config")
	})
	if refDirErr != nil {
		t.Fatal(refDirErr)
	}
	if _, err := os.Stat(refDirPath); err != nil {
		t.Fatalf("reference test cases: %v", err)
	}
	return refDirPath
}

// compileEnvoyFiles builds a snapshot from gatehouse config naming the
// given envoy config files.
func compileEnvoyFiles(t testing.TB, merge bool, files ...string) (*Snapshot, error) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: gatehouse/v1\nratelimit:\n  mergeDomains: %v\n  envoyConfigs:\n", merge)
	for _, f := range files {
		fmt.Fprintf(&b, "    - %q\n", f)
	}
	cfg, err := config.LoadBytes("<test>", []byte(b.String()), config.LoadOptions{})
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return Compile(cfg)
}

// refConfig loads files with the reference's own loader.
func refConfig(t testing.TB, merge bool, files ...string) refconfig.RateLimitConfig {
	t.Helper()
	var loads []refconfig.RateLimitConfigToLoad
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		loads = append(loads, refconfig.RateLimitConfigToLoad{Name: f, ConfigYaml: refconfig.ConfigFileContentToYaml(f, string(b))})
	}
	return refconfig.NewRateLimitConfigImpl(loads, nullStats(), merge)
}

// TestEnvoyConfigErrors loads the reference project's bad config test cases:
// each must be refused with the reference's message, and never panic.
func TestEnvoyConfigErrors(t *testing.T) {
	dir := refTestdata(t)
	tests := []struct {
		files []string
		merge bool
		want  string
	}{
		{[]string{"empty_domain.yaml"}, false, "config file cannot have empty domain"},
		{[]string{"basic_config.yaml", "duplicate_domain.yaml"}, false, "duplicate domain 'test-domain' in config file"},
		{[]string{"empty_key.yaml"}, false, "descriptor has empty key"},
		{[]string{"duplicate_key.yaml"}, false, "duplicate descriptor composite key 'test-domain.key1_value1'"},
		{[]string{"merge_domain_key1.yaml", "merge_domain_key1.yaml"}, true, "duplicate descriptor composite key 'test-domain.key1_value1'"},
		{[]string{"bad_limit_unit.yaml"}, false, "invalid rate limit unit 'foo'"},
		{[]string{"replaces_self.yaml"}, false, "replaces should not contain name of same descriptor"},
		{[]string{"replaces_empty.yaml"}, false, "should not have an empty replaces entry"},
		{[]string{"bad_yaml.yaml"}, false, "error loading config file: yaml: line 2: found unexpected end of stream"},
		{[]string{"misspelled_key.yaml"}, false, "config error, unknown key 'ratelimit'"},
		{[]string{"misspelled_key2.yaml"}, false, "config error, unknown key 'requestsperunit'"},
		{[]string{"non_string_key.yaml"}, false, "config error, key is not of type string: 0.25"},
		{[]string{"non_map_list.yaml"}, false, "config error, yaml file contains list of type other than map: a"},
		{[]string{"unlimited_with_unit.yaml"}, false, "should not specify rate limit unit when unlimited"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.files, "+"), func(t *testing.T) {
			var paths []string
			for _, f := range tt.files {
				paths = append(paths, filepath.Join(dir, f))
			}
			_, err := compileEnvoyFiles(t, tt.merge, paths...)
			if err == nil {
				t.Fatalf("Compile(%v) = nil error; want %q", tt.files, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Compile(%v) = %q; want it to contain %q", tt.files, err, tt.want)
			}
			var errs config.Errors
			if e, ok := err.(config.Errors); ok {
				errs = e
			}
			if len(errs) == 0 || !strings.HasPrefix(string(errs[0].Path), "ratelimit.envoyConfigs[") {
				t.Errorf("Compile(%v) error %q has no envoyConfigs[i] path", tt.files, err)
			}
		})
	}
}

// TestEnvoyConfigMatchesReference answers generated descriptors with the
// reference's GetLimit and with gatehouse's tree, for every valid config of
// the reference's test cases, and requires the same limit and the same
// counter sharing (two descriptors share a counter in one iff in the other).
func TestEnvoyConfigMatchesReference(t *testing.T) {
	dir := refTestdata(t)
	for _, tc := range []struct {
		files []string
		merge bool
	}{
		{[]string{"basic_config.yaml"}, false},
		{[]string{"merge_domain_key1.yaml", "merge_domain_key2.yaml"}, true},
		{[]string{"shadowmode_config.yaml"}, false},
		{[]string{"wildcard.yaml"}, false},
		{[]string{"share_threshold.yaml"}, false},
	} {
		t.Run(strings.Join(tc.files, "+"), func(t *testing.T) {
			var paths []string
			for _, f := range tc.files {
				paths = append(paths, filepath.Join(dir, f))
			}
			snap, err := compileEnvoyFiles(t, tc.merge, paths...)
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			ref := refConfig(t, tc.merge, paths...)
			descs := generateDescriptors(t, snap, 4000)
			compareWithReference(t, snap, ref, "test-domain", descs)
		})
	}
}

// compareWithReference checks each descriptor against the reference.
func compareWithReference(t *testing.T, snap *Snapshot, ref refconfig.RateLimitConfig, domain string, descs []*ratelimitv3.RateLimitDescriptor) {
	t.Helper()
	dom, ok := snap.Domain(domain)
	if !ok {
		t.Fatalf("domain %q not compiled", domain)
	}
	keys := reflimiter.NewCacheKeyGenerator("")
	refToOurs := map[string]string{}
	oursToRef := map[string]string{}
	hits := 0
	for _, d := range descs {
		want := ref.GetLimit(context.Background(), domain, d)
		rule, ident, _, err := dom.Match(d, nil)
		if err != nil {
			t.Fatalf("Match(%v) error %v", d, err)
		}
		if (want == nil) != (rule == nil) {
			t.Fatalf("Match(%v) = %v; reference says %v", entriesString(d), rule, want)
		}
		if want == nil {
			continue
		}
		hits++
		if got := ruleSummary(rule); got != refSummary(want) {
			t.Fatalf("Match(%v) = %s; reference %s", entriesString(d), got, refSummary(want))
		}
		if want.Unlimited {
			continue
		}
		rk := keys.GenerateCacheKey(domain, d, want, 0).Key
		if o, seen := refToOurs[rk]; seen && o != string(ident) {
			t.Fatalf("reference counter %q is two gatehouse counters %q and %q", rk, o, ident)
		}
		if r, seen := oursToRef[string(ident)]; seen && r != rk {
			t.Fatalf("gatehouse counter %q is two reference counters %q and %q", ident, r, rk)
		}
		refToOurs[rk], oursToRef[string(ident)] = string(ident), rk
	}
	t.Logf("%d of %d generated descriptors have a limit; %d distinct counters", hits, len(descs), len(refToOurs))
	if hits < len(descs)/20 {
		t.Errorf("only %d of %d generated descriptors have a limit; the generator misses the config", hits, len(descs))
	}
}

func ruleSummary(r *Rule) string {
	s := fmt.Sprintf("unlimited=%v shadow=%v quota=%v name=%q replaces=%v", r.Unlimited, r.Shadow, r.QuotaMode, r.Name, r.Replaces)
	if len(r.Limits) == 1 {
		s += fmt.Sprintf(" rpu=%d unit=%v", r.Limits[0].Proto.RequestsPerUnit, r.Limits[0].Proto.Unit)
	}
	return s
}

func refSummary(r *refconfig.RateLimit) string {
	replaces := r.Replaces
	if len(replaces) == 0 {
		replaces = nil
	}
	s := fmt.Sprintf("unlimited=%v shadow=%v quota=%v name=%q replaces=%v", r.Unlimited, r.ShadowMode, r.QuotaMode, r.Name, replaces)
	if !r.Unlimited {
		s += fmt.Sprintf(" rpu=%d unit=%v", r.Limit.RequestsPerUnit, r.Limit.Unit)
	}
	return s
}

func entriesString(d *ratelimitv3.RateLimitDescriptor) string {
	var parts []string
	for _, e := range d.GetEntries() {
		parts = append(parts, e.GetKey()+"="+e.GetValue())
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// generateDescriptors builds descriptors from the keys and values of the
// compiled trees: exact values, wildcard matches and misses, at every depth.
func generateDescriptors(t testing.TB, snap *Snapshot, n int) []*ratelimitv3.RateLimitDescriptor {
	type kv struct{ k, v string }
	var levels [][]kv
	var walk func(node *envoyNode, depth int)
	walk = func(node *envoyNode, depth int) {
		for fk, child := range node.children {
			for len(levels) <= depth+1 {
				levels = append(levels, nil)
			}
			k, v, _ := strings.Cut(fk, "_")
			add := []kv{{k, v}, {k, "other"}, {k, ""}}
			if strings.HasSuffix(v, "*") {
				base := strings.TrimSuffix(v, "*")
				add = append(add, kv{k, base}, kv{k, base + "x"}, kv{k, base + "yy"})
			}
			if v == "" {
				add = append(add, kv{k, "any"}, kv{k, "value1"})
			}
			levels[depth] = append(levels[depth], add...)
			walk(child, depth+1)
		}
	}
	for _, name := range snap.DomainNames() {
		if d, _ := snap.Domain(name); d.envoy != nil {
			walk(d.envoy, 0)
		}
	}
	r := rand.New(rand.NewPCG(11, 12))
	var out []*ratelimitv3.RateLimitDescriptor
	for i := 0; i < n; i++ {
		depth := 1 + r.IntN(len(levels))
		d := &ratelimitv3.RateLimitDescriptor{}
		for j := 0; j < depth; j++ {
			lv := levels[min(j, len(levels)-1)]
			if len(lv) == 0 || r.IntN(8) == 0 {
				lv = levels[r.IntN(len(levels))]
			}
			if len(lv) == 0 {
				continue
			}
			p := lv[r.IntN(len(lv))]
			d.Entries = append(d.Entries, &ratelimitv3.RateLimitDescriptor_Entry{Key: p.k, Value: p.v})
		}
		out = append(out, d)
	}
	return out
}

// TestEnvoyReferenceCases replays the descriptors the reference's own
// config tests query, with the answers they expect.
func TestEnvoyReferenceCases(t *testing.T) {
	dir := refTestdata(t)
	snap, err := compileEnvoyFiles(t, false, filepath.Join(dir, "basic_config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dom, _ := snap.Domain("test-domain")
	e := func(kv ...string) *ratelimitv3.RateLimitDescriptor {
		d := &ratelimitv3.RateLimitDescriptor{}
		for i := 0; i+1 < len(kv); i += 2 {
			d.Entries = append(d.Entries, &ratelimitv3.RateLimitDescriptor_Entry{Key: kv[i], Value: kv[i+1]})
		}
		return d
	}
	tests := []struct {
		d    *ratelimitv3.RateLimitDescriptor
		want string // "" = no limit
	}{
		{e(), ""},
		{e("key1", "something"), ""},
		{e("key1", "value1"), ""},
		{e("key2", "value2", "subkey", "subvalue"), ""},
		{e("key5", "value5", "subkey5", "subvalue"), ""},
		{e("key1", "value1", "subkey1", "something"), "5/SECOND"},
		{e("key1", "value1", "subkey1", "subvalue1"), "10/SECOND"},
		{e("key2", "something"), "20/MINUTE"},
		{e("key2", "value2"), "30/MINUTE"},
		{e("key2", "value3"), ""},
		{e("key3", "foo"), "1/HOUR"},
		{e("key4", "foo"), "1/DAY key4_rate_limit"},
		{e("key6", "foo"), "unlimited"},
		{e("key7", "unspecified_value"), "70/MINUTE"},
	}
	for _, tt := range tests {
		rule, _, _, err := dom.Match(tt.d, nil)
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		switch {
		case rule == nil:
		case rule.Unlimited:
			got = "unlimited"
		default:
			got = fmt.Sprintf("%d/%v", rule.Limits[0].Proto.RequestsPerUnit, rule.Limits[0].Proto.Unit)
			if rule.Name != "" {
				got += " " + rule.Name
			}
		}
		if got != tt.want {
			t.Errorf("Match(%s) = %q; want %q", entriesString(tt.d), got, tt.want)
		}
	}
}

// TestReferenceKeysAndStats: in reference mode a descriptor's counter is
// the reference's own Redis key, and its stats key (the key of its
// per-rule counters) the reference's, detailed_metric, value_to_metric
// and share_threshold included.
func TestReferenceKeysAndStats(t *testing.T) {
	dir := refTestdata(t)
	for _, files := range [][]string{
		{"testdata/stats.yaml"},
		{filepath.Join(dir, "basic_config.yaml")},
		{filepath.Join(dir, "wildcard.yaml")},
		{filepath.Join(dir, "share_threshold.yaml")},
	} {
		t.Run(filepath.Base(files[0]), func(t *testing.T) {
			var b strings.Builder
			b.WriteString("apiVersion: gatehouse/v1\nratelimit:\n  reference: {}\n  envoyConfigs:\n")
			for _, f := range files {
				fmt.Fprintf(&b, "    - %q\n", f)
			}
			cfg, err := config.LoadBytes("<test>", []byte(b.String()), config.LoadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			snap, err := Compile(cfg)
			if err != nil {
				t.Fatal(err)
			}
			ref := refConfig(t, false, files...)
			dom, _ := snap.Domain("test-domain")
			keys := reflimiter.NewCacheKeyGenerator("")
			descs := generateDescriptors(t, snap, 4000)
			checked, perValue := 0, 0
			for _, d := range descs {
				want := ref.GetLimit(context.Background(), "test-domain", d)
				rule, ident, _, err := dom.Match(d, nil)
				if err != nil {
					t.Fatal(err)
				}
				if want == nil || rule == nil || want.Unlimited {
					continue
				}
				checked++
				if got, wantKey := string(ident)+"0", keys.GenerateCacheKey("test-domain", d, want, 0).Key; got != wantKey {
					t.Fatalf("Match(%s) key %q; reference %q", entriesString(d), got, wantKey)
				}
				if rule.PerValueStats {
					perValue++
				}
				if got := dom.StatsKey(rule, d.Entries); got != want.FullKey {
					t.Fatalf("StatsKey(%s) = %q; reference %q", entriesString(d), got, want.FullKey)
				}
			}
			t.Logf("%d descriptors with a limit (%d with per-value stats) keyed as the reference", checked, perValue)
			if checked < 100 {
				t.Errorf("only %d descriptors had a limit", checked)
			}
		})
	}
}

// TestOverrideStatsKey: the stats key of Envoy's limit override.
func TestOverrideStatsKey(t *testing.T) {
	d := &ratelimitv3.RateLimitDescriptor{Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: "a", Value: "1"}, {Key: "b"}, {Key: "c", Value: "x.y"}}}
	if got, want := OverrideStatsKey("dom", d.Entries), "dom.a_1.b.c_x.y"; got != want {
		t.Errorf("OverrideStatsKey = %q; want %q", got, want)
	}
}
