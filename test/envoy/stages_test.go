package envoy_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/contract"
	"github.com/gatehouse/gatehouse/test/harness"
)

// Envoy's counters of the two ext_proc stages on the mesh's listener
// (each filter's stat_prefix is its stage).
const (
	preStats  = "http.public.ext_proc.pre_authz."
	postStats = "http.public.ext_proc.post_authz."
)

// testExtProcStages proves the order of issue 14 through Envoy:
// header_mutation → ext_proc pre_authz → ext_authz → ratelimit → ext_proc
// post_authz → router. Envoy's own counters are the witness: a request
// ext_authz refuses opened a pre_authz stream (so that stage ran first)
// and no post_authz stream (so the contract and the idempotency store are
// behind ext_authz); a request the rate limit refuses opened none either.
func testExtProcStages(t *testing.T, m *harness.Mesh) {
	c := harness.HTTP1()
	stats := func() map[string]int64 { return m.Envoy.Stats(`^http\.public\.ext_proc\.`) }
	started := func(a, b map[string]int64) (pre, post int64) {
		return b[preStats+"streams_started"] - a[preStats+"streams_started"], b[postStats+"streams_started"] - a[postStats+"streams_started"]
	}
	post := func(tok, body, key string) *harness.Response {
		h := []string{"content-type: application/json"}
		if tok != "" {
			h = append(h, "authorization: Bearer "+tok)
		}
		if key != "" {
			h = append(h, "idempotency-key: "+key)
		}
		return harness.Send(t, c, harness.Request{Method: "POST", URL: m.URL() + "/staged", Body: body, Headers: h})
	}
	sfx := fmt.Sprint(time.Now().UnixNano())

	// The filter chain as Envoy holds it.
	names := listenerFilters(t, m)
	pre, authz, post2 := slices.Index(names, contract.ExtProcPreAuthzFilterName), slices.Index(names, contract.AuthzFilterName), slices.Index(names, contract.ExtProcPostAuthzFilterName)
	rl := slices.Index(names, "envoy.filters.http.ratelimit")
	if pre < 0 || authz < 0 || rl < 0 || post2 < 0 || !(pre < authz && authz < rl && rl < post2 && post2 == len(names)-2) {
		t.Errorf("Envoy's HTTP filters = %v; want ext_proc pre_authz < ext_authz < ratelimit < ext_proc post_authz < router", names)
	}

	// gatehouse's side: which filter opened each stream, by the stage in
	// its metadata.
	g := m.Gatehouse[0]
	gstage := func(st string) float64 {
		return max(0, g.Metric("gatehouse_extproc_stage_streams_total", `stage="`+st+`"`))
	}
	g0 := map[string]float64{"pre_authz": gstage("pre_authz"), "post_authz": gstage("post_authz"), "all": gstage("all")}

	// 1. No credentials and a body the contract refuses: ext_authz's 401,
	// not the contract's 400. pre_authz ran (before ext_authz), post_authz
	// did not.
	s0 := stats()
	r := post("", `{"item":"NOT VALID","extra":1}`, "")
	s1 := stats()
	if d := gstage("pre_authz") - g0["pre_authz"]; d != 1 {
		t.Errorf("gatehouse counted %v pre_authz streams for the unauthenticated request; want 1", d)
	}
	if d := gstage("post_authz") - g0["post_authz"]; d != 0 {
		t.Errorf("gatehouse counted %v post_authz streams for the unauthenticated request; want 0", d)
	}
	if r.Status != http.StatusUnauthorized || strings.Contains(string(r.Body), "contract") {
		t.Errorf("unauthenticated invalid body: %d %s; want ext_authz's 401, nothing of the contract", r.Status, r.Body)
	}
	if p, q := started(s0, s1); p != 1 || q != 0 {
		t.Errorf("unauthenticated request opened %d pre_authz and %d post_authz streams; want 1 and 0", p, q)
	}
	// The 401 passed back through pre_authz: it carries hygiene's
	// security headers like every response of the route.
	if got := r.Header.Get("x-content-type-options"); got != "nosniff" {
		t.Errorf("401 x-content-type-options = %q; want nosniff (pre_authz sees ext_authz's reply)", got)
	}

	// 2. Authenticated, invalid body: now the contract answers.
	pro := harness.DemoToken(t, "stella-"+sfx, "pro", "", map[string]any{"jti": "a"})
	r = post(pro, `{"item":"NOT VALID"}`, "")
	s2 := stats()
	if r.Status != http.StatusBadRequest || !strings.HasPrefix(r.Header.Get("content-type"), "application/problem+json") {
		t.Errorf("authenticated invalid body: %d %s; want the contract's 400", r.Status, r.Body)
	}
	if p, q := started(s1, s2); p != 1 || q != 1 {
		t.Errorf("authenticated request opened %d pre_authz and %d post_authz streams; want 1 and 1", p, q)
	}

	// 3. Over the quota: the rate limit's 429; post_authz never saw it,
	// so the idempotency store was not asked either.
	free := harness.DemoToken(t, "fritz-"+sfx, "free", "", nil)
	for i := range 2 {
		if r := post(free, `{"item":"ok"}`, ""); r.Status != http.StatusOK {
			t.Fatalf("free request %d of 2: %d %s; want 200", i+1, r.Status, r.Body)
		}
	}
	s3 := stats()
	r = post(free, `{"item":"ok"}`, "key-"+sfx)
	s4 := stats()
	if r.Status != http.StatusTooManyRequests {
		t.Fatalf("free request 3 of 2: %d; want 429", r.Status)
	}
	if p, q := started(s3, s4); p != 1 || q != 0 {
		t.Errorf("throttled request opened %d pre_authz and %d post_authz streams; want 1 and 0", p, q)
	}

	// 4. Idempotency keys are scoped by the verified subject: a refreshed
	// token of the same subject gets the replay, another subject with the
	// same key does not.
	up := m.Upstreams["echo"]
	key := "stage-" + sfx
	before := up.Count()
	first := post(pro, `{"item":"one"}`, key)
	if first.Status != http.StatusOK {
		t.Fatalf("first keyed POST: %d %s", first.Status, first.Body)
	}
	refreshed := harness.DemoToken(t, "stella-"+sfx, "pro", "", map[string]any{"jti": "b"})
	if refreshed == pro {
		t.Fatal("the refreshed token equals the first one")
	}
	second := post(refreshed, `{"item":"one"}`, key)
	if second.Header.Get("idempotent-replayed") != "true" || string(second.Body) != string(first.Body) {
		t.Errorf("same subject, refreshed token: %d replayed=%q; want the stored answer replayed", second.Status, second.Header.Get("idempotent-replayed"))
	}
	other := post(harness.DemoToken(t, "otto-"+sfx, "pro", "", nil), `{"item":"one"}`, key)
	if other.Status != http.StatusOK || other.Header.Get("idempotent-replayed") != "" {
		t.Errorf("another subject, same key: %d replayed=%q; want it to run", other.Status, other.Header.Get("idempotent-replayed"))
	}
	if n := up.Count() - before; n != 2 {
		t.Errorf("the upstream ran %d keyed requests; want 2 (stella once, otto once)", n)
	}

	// 5. The upstream saw ext_authz's identity, not stripped by either
	// stage, and hygiene's ids.
	e, ok := other.Echo()
	if !ok || !strings.HasPrefix(e.Header(contract.HeaderSubject), "otto-") || !traceparentRe.MatchString(e.Header("traceparent")) {
		t.Errorf("upstream saw subject %q traceparent %q; want ext_authz's subject and hygiene's traceparent", e.Header(contract.HeaderSubject), e.Header("traceparent"))
	}

	if d := gstage("all") - g0["all"]; d != 0 {
		t.Errorf("gatehouse counted %v streams without a stage; want 0: every filter xds pushes names its stage", d)
	}
	s5 := stats()
	for _, k := range []string{"streams_failed", "spurious_msgs_received", "message_timeouts", "rejected_header_mutations"} {
		for _, p := range []string{preStats, postStats} {
			if s5[p+k] != 0 {
				t.Errorf("Envoy's %s%s = %d; want 0", p, k, s5[p+k])
			}
		}
	}
}

// listenerFilters are the HTTP filter names of the mesh's listener in
// Envoy's config dump.
func listenerFilters(t *testing.T, m *harness.Mesh) []string {
	t.Helper()
	dump := harness.DumpSection(m.Envoy.ConfigDump(), "ListenersConfigDump")
	var out []string
	for _, l := range asSlice(dump["dynamic_listeners"]) {
		lis, _ := l.(map[string]any)
		active, _ := lis["active_state"].(map[string]any)
		listener, _ := active["listener"].(map[string]any)
		for _, fc := range asSlice(listener["filter_chains"]) {
			for _, f := range asSlice(fc.(map[string]any)["filters"]) {
				tc, _ := f.(map[string]any)["typed_config"].(map[string]any)
				for _, hf := range asSlice(tc["http_filters"]) {
					out = append(out, fmt.Sprint(hf.(map[string]any)["name"]))
				}
			}
		}
	}
	if len(out) == 0 {
		t.Fatal("no HTTP filters in Envoy's config dump")
	}
	return out
}

func asSlice(v any) []any {
	s, _ := v.([]any)
	return s
}
