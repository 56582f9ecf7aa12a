package ratelimit_test

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/redisx"
	"github.com/gatehouse/gatehouse/internal/testenv"
	"github.com/gatehouse/gatehouse/ratelimit"
	"github.com/gatehouse/gatehouse/ratelimit/compat"
	"github.com/gatehouse/gatehouse/ratelimit/quota"
)

var (
	diffConfigs   = flag.Int("diff.configs", 12, "generated configs per variant of the differential test")
	diffSequences = flag.Int("diff.sequences", 6, "request sequences per generated config")
	diffSeed      = flag.Uint64("diff.seed", 0, "seed of the differential test (0: a new one, logged)")
)

// onPurpose are the differences docs/ratelimit.md lists under
// "Differences, on purpose" that generated requests can show; each
// normalizes both answers where the difference lies. A difference left
// after them fails the test. TestDifferencesAreDocumented holds every id
// here to the doc.
var onPurpose = []struct {
	id        string
	normalize func(*rlsv3.RateLimitResponse)
}{
	{"override-text", func(r *rlsv3.RateLimitResponse) {
		// The reference renders a limit override with protobuf's text
		// format, whose spacing varies from build to build on purpose.
		walkStrings(r.GetDynamicMetadata(), "limit", func(s string) string { return strings.Join(strings.Fields(s), " ") })
	}},
}

func walkStrings(s *structpb.Struct, field string, f func(string) string) {
	if s == nil {
		return
	}
	for k, v := range s.GetFields() {
		switch x := v.GetKind().(type) {
		case *structpb.Value_StringValue:
			if k == field {
				s.Fields[k] = structpb.NewStringValue(f(x.StringValue))
			}
		case *structpb.Value_StructValue:
			walkStrings(x.StructValue, field, f)
		case *structpb.Value_ListValue:
			for _, e := range x.ListValue.GetValues() {
				walkStrings(e.GetStructValue(), field, f)
			}
		}
	}
}

// TestDifferencesAreDocumented: every difference the differential test
// forgives is listed in docs/ratelimit.md under "Differences, on purpose".
func TestDifferencesAreDocumented(t *testing.T) {
	b, err := os.ReadFile("../../docs/ratelimit.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	i := strings.Index(doc, "Differences, on purpose")
	if i < 0 {
		t.Fatal(`docs/ratelimit.md has no "Differences, on purpose" section`)
	}
	section := doc[i:]
	if j := strings.Index(section[1:], "\n## "); j >= 0 {
		section = section[:j+1]
	}
	ids := append([]string(nil), excluded...)
	for _, d := range onPurpose {
		ids = append(ids, d.id)
	}
	for _, id := range ids {
		if !strings.Contains(section, "`"+id+"`") {
			t.Errorf("difference %q is forgiven by the differential test but not listed (as `%s`) under \"Differences, on purpose\"", id, id)
		}
	}
}

// variant is one reference environment the test runs.
type variant struct {
	name string
	env  map[string]string
	// separateOverrides puts each limit override (each limit and unit) on
	// descriptors of its own, which no config rule and no other override
	// matches: the difference `cache-override` (the reference's local
	// cache, keyed by counter, refuses a descriptor once another limit
	// sharing its counter is past its own) is listed, and would otherwise
	// show.
	separateOverrides bool
}

var variants = []variant{
	{name: "headers-metadata", env: map[string]string{"LIMIT_RESPONSE_HEADERS_ENABLED": "true", "RESPONSE_DYNAMIC_METADATA": "true"}},
	{name: "local-cache", env: map[string]string{"LOCAL_CACHE_SIZE_IN_BYTES": "1048576", "LIMIT_RESPONSE_HEADERS_ENABLED": "true"}, separateOverrides: true},
	{name: "shadow-mode", env: map[string]string{"SHADOW_MODE": "true", "LIMIT_RESPONSE_HEADERS_ENABLED": "true", "RESPONSE_DYNAMIC_METADATA": "true"}},
	{name: "quota-mode", env: map[string]string{"QUOTA_MODE": "true", "RESPONSE_DYNAMIC_METADATA": "true"}},
}

// excluded are differences the generator avoids where a variant would
// show them; like onPurpose, each must be listed in docs/ratelimit.md.
var excluded = []string{"cache-override"}

// TestDifferentialWithReference is the differential test of issue 11:
// generated envoyproxy/ratelimit configs (nested descriptors, wildcards,
// value and value_to_metric, share_threshold, shadow_mode, quota_mode,
// replaces, unlimited, names, detailed_metric) and generated request
// sequences (several descriptors, hits_addend 0, 1 and N on the request
// and the descriptor, limit overrides, over-limit runs, unknown domains)
// are served by the reference binary at the pinned version and by
// gatehouse built from the same environment (ratelimit-compat's
// translation), each on its own redis-server flushed between cases. Every
// field of every answer must be equal — overall and per-descriptor codes,
// current_limit with its name, limit_remaining, duration_until_reset,
// response headers, dynamic metadata — and so must the counters left in
// Redis, except for the differences listed in onPurpose.
func TestDifferentialWithReference(t *testing.T) {
	if testing.Short() {
		t.Skip("the differential test runs the reference binary")
	}
	bin := referenceBinary(t)
	seed := *diffSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (rerun with -diff.seed=%d)", seed, seed)
	total := 0
	for vi, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			total += runVariant(t, bin, v, seed+uint64(vi))
		})
	}
	t.Logf("%d generated cases answered alike by the reference and gatehouse", total)
}

func runVariant(t *testing.T, bin string, v variant, seed uint64) int {
	root := t.TempDir()
	dir := filepath.Join(root, "rl", "config")
	swap := testenv.ConfigMap(t, dir)
	gen := &generator{r: rand.New(rand.NewPCG(seed, 7)), separateOverrides: v.separateOverrides}
	cfgFile, marker := gen.config(0)
	swap(map[string]string{"gen.yaml": cfgFile})

	refRedis, ghRedis := testenv.StartRedis(t), testenv.StartRedis(t)
	env := refEnv(t, refRedis.Addr(), root, "rl")
	for k, val := range v.env {
		env[k] = val
	}
	ref := startService(t, "reference", bin, nil, env)
	ghEnv := refEnv(t, ghRedis.Addr(), root, "rl")
	for k, val := range v.env {
		ghEnv[k] = val
	}
	gh := startInProcess(t, ghEnv)
	refRDB := redis.NewClient(&redis.Options{Addr: refRedis.Addr()})
	ghRDB := redis.NewClient(&redis.Options{Addr: ghRedis.Addr()})
	t.Cleanup(func() { refRDB.Close(); ghRDB.Close() })

	cases := 0
	for c := 0; c < *diffConfigs; c++ {
		if c > 0 {
			cfgFile, marker = gen.config(c)
			swap(map[string]string{"gen.yaml": cfgFile})
		}
		waitLoaded(t, ref, gh, marker)
		for s := 0; s < *diffSequences; s++ {
			seq := gen.sequence(c)
			runCase(t, fmt.Sprintf("config %d sequence %d", c, s), cfgFile, seq, ref.client, gh.client, refRDB, ghRDB)
			cases++
		}
	}
	t.Logf("%s: %d configs, %d cases", v.name, *diffConfigs, cases)
	return cases
}

// inProcess is gatehouse's rate limiter built from a reference
// environment, as ratelimit-compat builds it.
type inProcess struct {
	srv    *ratelimit.Server
	client rlsv3.RateLimitServiceClient
}

func startInProcess(t *testing.T, env map[string]string) *inProcess {
	t.Helper()
	ce, err := compat.FromEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.LoadBytes("<env>", ce.Config, config.LoadOptions{LookupEnv: ce.LookupEnv})
	if err != nil {
		t.Fatalf("config from the environment: %v\n%s", err, ce.Config)
	}
	rdb, err := redisx.New(cfg.Redis)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	r := startReplica(t, cfg, rdb, cfg.Redis.KeyPrefix)
	return &inProcess{srv: r.srv, client: r.client}
}

// rlconfig is the server's /rlconfig page.
func (p *inProcess) rlconfig() string {
	rec := httptest.NewRecorder()
	p.srv.AdminRoutes()["GET /rlconfig"].ServeHTTP(rec, httptest.NewRequest("GET", "/rlconfig", nil))
	return rec.Body.String()
}

// waitLoaded waits until both servers serve the config holding marker
// (a line of /rlconfig), after a ConfigMap swap.
func waitLoaded(t *testing.T, ref *service, gh *inProcess, marker string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, refDump := get(t, ref.debug, "/rlconfig")
		if strings.Contains(refDump, marker) && strings.Contains(gh.rlconfig(), marker) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the generated config (%q) was not loaded:\nreference:\n%s\ngatehouse:\n%s", marker, refDump, gh.rlconfig())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runCase flushes both Redis servers and sends seq to both servers within
// one second (the reference's clock has whole seconds: durations and
// window keys must be computed in the same one), comparing every answer
// and then the counters in Redis. A run that crossed a second boundary is
// run again.
func runCase(t *testing.T, name, cfgFile string, seq []*rlsv3.RateLimitRequest, ref, gh rlsv3.RateLimitServiceClient, refRDB, ghRDB *redis.Client) {
	t.Helper()
	ctx := context.Background()
	for attempt := 0; ; attempt++ {
		if attempt == 20 {
			t.Fatalf("%s: could not run within one second in 20 attempts (a loaded machine)", name)
		}
		for _, c := range []*redis.Client{refRDB, ghRDB} {
			if err := c.FlushAll(ctx).Err(); err != nil {
				t.Fatal(err)
			}
		}
		// Start early in a second: a case takes some tens of ms.
		if now := time.Now(); now.Nanosecond() > 600_000_000 {
			time.Sleep(time.Until(now.Truncate(time.Second).Add(time.Second + 5*time.Millisecond)))
		}
		start := time.Now()
		var diffs []string
		for i, req := range seq {
			want, werr := ask(ctx, ref, req)
			got, gerr := ask(ctx, gh, req)
			if werr != nil || gerr != nil {
				t.Fatalf("%s, request %d %s: reference error %v, gatehouse error %v\nconfig:\n%s", name, i, describe(req), werr, gerr, cfgFile)
			}
			for _, d := range onPurpose {
				d.normalize(want)
				d.normalize(got)
			}
			if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
				diffs = append(diffs, fmt.Sprintf("request %d %s (-reference +gatehouse):\n%s", i, describe(req), diff))
			}
		}
		if time.Now().Truncate(time.Second) != start.Truncate(time.Second) {
			continue
		}
		if len(diffs) > 0 {
			t.Fatalf("%s: answers differ:\n%s\nconfig:\n%s", name, strings.Join(diffs, "\n"), cfgFile)
		}
		if w, g := counters(t, refRDB), counters(t, ghRDB); !cmp.Equal(w, g) {
			var lines []string
			for i, req := range seq {
				lines = append(lines, fmt.Sprintf("  %d %s", i, describe(req)))
			}
			t.Fatalf("%s (attempt %d): counters in Redis differ (-reference +gatehouse):\n%s\nrequests:\n%s\nconfig:\n%s", name, attempt, cmp.Diff(w, g), strings.Join(lines, "\n"), cfgFile)
		}
		return
	}
}

// counters reads every counter of a Redis server; a 0 counter is the
// same as none (the reference writes one for hits_addend 0).
func counters(t *testing.T, c *redis.Client) map[string]string {
	ctx := context.Background()
	out := map[string]string{}
	iter := c.Scan(ctx, 0, "*", 1000).Iterator()
	for iter.Next(ctx) {
		v, err := c.Get(ctx, iter.Val()).Result()
		if err != nil {
			t.Fatal(err)
		}
		if v != "0" {
			out[iter.Val()] = v
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// generator makes envoyproxy/ratelimit configs and requests for them.
type generator struct {
	r      *rand.Rand
	domain string
	// paths are descriptor shapes reaching a node of the current config:
	// per level the key and the configured value ("" key-only, "p*"
	// wildcard).
	paths [][][2]string
	names []string
	// separateOverrides: see variant.
	separateOverrides bool
}

var (
	genKeys   = []string{"a", "b", "c"}
	genValues = []string{"", "", "x", "y", "p*", "q*"}
	genUnits  = []string{"second", "minute", "hour", "day", "week", "month", "year"}
)

// config returns a valid config of a new domain, and the /rlconfig line
// that shows it is loaded.
func (g *generator) config(n int) (string, string) {
	for {
		g.domain = fmt.Sprintf("gen%d", n)
		g.paths, g.names = nil, nil
		root := map[string]any{"domain": g.domain, "descriptors": g.level(0, nil)}
		b, err := yaml.Marshal(root)
		if err != nil {
			panic(err)
		}
		files := []quota.EnvoyFile{{Name: "gen.yaml", Data: b}}
		if quota.ParseEnvoy(files, false) != nil || !strings.Contains(string(b), "rate_limit:") {
			continue // the reference would refuse it, or it limits nothing: draw again
		}
		cfg := string(b)
		// A rule line of /rlconfig: "<domain>.<key>…: unit=".
		return cfg, g.domain + "."
	}
}

func (g *generator) level(depth int, parent [][2]string) []map[string]any {
	var out []map[string]any
	seen := map[string]bool{}
	n := 1 + g.r.IntN(4-depth)
	for i := 0; i < n; i++ {
		k, v := genKeys[g.r.IntN(len(genKeys))], genValues[g.r.IntN(len(genValues))]
		fk := k + "_" + v
		if seen[fk] {
			continue
		}
		seen[fk] = true
		d := map[string]any{"key": k}
		if v != "" {
			d["value"] = v
		}
		path := append(append([][2]string(nil), parent...), [2]string{k, v})
		if g.r.IntN(10) < 7 {
			rl := map[string]any{}
			if g.r.IntN(10) == 0 {
				rl["unlimited"] = true
			} else {
				rl["unit"] = genUnits[g.r.IntN(len(genUnits))]
				rl["requests_per_unit"] = g.r.IntN(5)
			}
			if g.r.IntN(3) == 0 {
				name := fmt.Sprintf("n%d", g.r.IntN(4))
				rl["name"] = name
				g.names = append(g.names, name)
			}
			if g.r.IntN(5) == 0 && len(g.names) > 0 {
				if r := g.names[g.r.IntN(len(g.names))]; r != rl["name"] {
					rl["replaces"] = []map[string]any{{"name": r}}
				}
			}
			d["rate_limit"] = rl
			switch g.r.IntN(8) {
			case 0:
				d["shadow_mode"] = true
			case 1:
				d["quota_mode"] = true
			case 2:
				d["detailed_metric"] = true
			}
		}
		if g.r.IntN(5) == 0 {
			d["value_to_metric"] = true
		}
		if strings.HasSuffix(v, "*") && g.r.IntN(2) == 0 {
			d["share_threshold"] = true
		}
		g.paths = append(g.paths, path)
		if depth < 2 && g.r.IntN(3) == 0 {
			d["descriptors"] = g.level(depth+1, path)
		}
		out = append(out, d)
	}
	return out
}

// descriptor makes a descriptor along a path of the config: the values it
// names, a value for key-only levels, a value under a wildcard, and now
// and then a miss or a longer or shorter descriptor.
func (g *generator) descriptor() *ratelimitv3.RateLimitDescriptor {
	path := g.paths[g.r.IntN(len(g.paths))]
	if g.r.IntN(6) == 0 && len(path) > 1 {
		path = path[:len(path)-1]
	}
	d := &ratelimitv3.RateLimitDescriptor{}
	for _, kv := range path {
		k, v := kv[0], kv[1]
		switch {
		case v == "":
			v = []string{"x", "y", "z", ""}[g.r.IntN(4)]
		case strings.HasSuffix(v, "*"):
			v = strings.TrimSuffix(v, "*") + []string{"", "1", "22", "3"}[g.r.IntN(4)]
		}
		if g.r.IntN(15) == 0 {
			v = "miss"
		}
		d.Entries = append(d.Entries, &ratelimitv3.RateLimitDescriptor_Entry{Key: k, Value: v})
	}
	if g.r.IntN(12) == 0 {
		d.Entries = append(d.Entries, &ratelimitv3.RateLimitDescriptor_Entry{Key: "extra", Value: "e"})
	}
	switch g.r.IntN(8) {
	case 0:
		d.HitsAddend = wrapperspb.UInt64(0)
	case 1:
		d.HitsAddend = wrapperspb.UInt64(uint64(1 + g.r.IntN(3)))
	}
	if g.r.IntN(10) == 0 {
		d.Limit = &ratelimitv3.RateLimitDescriptor_RateLimitOverride{
			RequestsPerUnit: uint32(g.r.IntN(4)),
			Unit:            typev3.RateLimitUnit(1 + g.r.IntN(7)), // SECOND … YEAR
		}
		if g.separateOverrides {
			// A key of its own per limit: no other limit shares its counter.
			key := fmt.Sprintf("ov%d%d", d.Limit.RequestsPerUnit, d.Limit.Unit)
			d.Entries = []*ratelimitv3.RateLimitDescriptor_Entry{{Key: key, Value: d.Entries[0].GetValue()}}
		}
	}
	return d
}

// sequence makes a case: a few distinct requests, sent in a random order
// with repeats, so that limits are reached and passed.
func (g *generator) sequence(n int) []*rlsv3.RateLimitRequest {
	var templates []*rlsv3.RateLimitRequest
	for i := 0; i < 2+g.r.IntN(4); i++ {
		req := &rlsv3.RateLimitRequest{Domain: g.domain}
		if g.r.IntN(25) == 0 {
			req.Domain = "undeclared"
		}
		for j := 0; j < 1+g.r.IntN(3); j++ {
			req.Descriptors = append(req.Descriptors, g.descriptor())
		}
		switch g.r.IntN(6) {
		case 0:
			req.HitsAddend = 1
		case 1:
			req.HitsAddend = uint32(2 + g.r.IntN(3))
		}
		templates = append(templates, req)
	}
	var seq []*rlsv3.RateLimitRequest
	for i := 0; i < 25; i++ {
		seq = append(seq, proto.Clone(templates[g.r.IntN(len(templates))]).(*rlsv3.RateLimitRequest))
	}
	return seq
}

// TestGeneratorCoversTheFeatures: the generated configs and requests hold
// every feature the differential test claims to cover.
func TestGeneratorCoversTheFeatures(t *testing.T) {
	g := &generator{r: rand.New(rand.NewPCG(1, 7))}
	var cfgs strings.Builder
	feats := map[string]bool{}
	for c := 0; c < 30; c++ {
		cfg, _ := g.config(c)
		cfgs.WriteString(cfg)
		for i := 0; i < 5; i++ {
			for _, req := range g.sequence(c) {
				if req.HitsAddend > 1 {
					feats["request hits_addend N"] = true
				}
				if req.Domain == "undeclared" {
					feats["undeclared domain"] = true
				}
				if len(req.Descriptors) > 1 {
					feats["several descriptors"] = true
				}
				for _, d := range req.Descriptors {
					if d.Limit != nil {
						feats["limit override"] = true
					}
					if d.HitsAddend != nil && d.HitsAddend.Value == 0 {
						feats["descriptor hits_addend 0"] = true
					}
					if len(d.Entries) > 1 {
						feats["nested descriptor"] = true
					}
				}
			}
		}
	}
	for _, f := range []string{"value: p*", "share_threshold: true", "value_to_metric: true", "shadow_mode: true", "quota_mode: true", "replaces:", "unlimited: true", "detailed_metric: true", "name: n", "descriptors:\n"} {
		if strings.Contains(cfgs.String(), f) {
			feats[f] = true
		} else {
			t.Errorf("no generated config has %q", f)
		}
	}
	for _, f := range []string{"request hits_addend N", "undeclared domain", "several descriptors", "limit override", "descriptor hits_addend 0", "nested descriptor"} {
		if !feats[f] {
			t.Errorf("no generated request has %s", f)
		}
	}
	names := make([]string, 0, len(feats))
	for f := range feats {
		names = append(names, f)
	}
	sort.Strings(names)
	t.Logf("covered: %s", strings.Join(names, "; "))
}
