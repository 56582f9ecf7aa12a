package envoy_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/test/harness"
)

// contractMesh is one gatehouse and Envoy in front of the echo upstream,
// with a Petstore contract on /v1 (strict) and on /legacy (relaxed JSON).
func contractMesh(t *testing.T) *harness.Mesh {
	t.Helper()
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	return harness.Start(t, harness.Options{
		Config:    read("contract.yaml"),
		Redis:     true,
		Upstreams: []string{"echo"},
		Files:     map[string]string{"pets.yaml": read("contract-pets.yaml")},
	})
}

// TestContractThroughEnvoy runs issue 20's cases through a real Envoy:
// what the contract validated is what the upstream reads.
func TestContractThroughEnvoy(t *testing.T) {
	m := contractMesh(t)
	for _, tc := range []struct {
		name string
		f    func(*testing.T, *harness.Mesh)
	}{
		{"strict JSON", testStrictJSON},
		{"encoded path", testEncodedPath},
		{"idempotency held after forwarding", testIdempotencyHeld},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.f(t, m) })
	}
}

// testStrictJSON: a request body with two JSON texts or a duplicated
// member never reaches the upstream (400 problem+json saying which); the
// relaxed route forwards both; a response with a duplicated member on a
// redaction route is refused (502) rather than sent on.
func testStrictJSON(t *testing.T, m *harness.Mesh) {
	up := m.Upstreams["echo"]
	c := harness.HTTP1()
	post := func(path, body string) *harness.Response {
		return harness.Send(t, c, harness.Request{Method: "POST", URL: m.URL() + path, Body: body, Headers: []string{"content-type: application/json"}})
	}
	for _, tc := range []struct{ name, body, detail string }{
		{"two texts", `{"name":"Rex","status":"sold"} {"x":1}`, "RFC 8259"},
		{"duplicate member", `{"name":"Rex","status":"lost","status":"sold"}`, "RFC 7493"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := up.Count()
			r := post("/v1/pets", tc.body)
			var p struct {
				Status int `json:"status"`
				Errors []struct{ In, Pointer, Detail string }
			}
			if r.Status != http.StatusBadRequest || !strings.HasPrefix(r.Header.Get("content-type"), "application/problem+json") ||
				json.Unmarshal(r.Body, &p) != nil || len(p.Errors) != 1 || !strings.Contains(p.Errors[0].Detail, tc.detail) {
				t.Fatalf("POST %s: %d %s %s; want 400 problem+json citing %s", tc.body, r.Status, r.Header.Get("content-type"), r.Body, tc.detail)
			}
			if n := up.Count() - before; n != 0 {
				t.Errorf("the upstream saw %d such requests", n)
			}
			r = post("/legacy/pets", tc.body)
			if e, ok := r.Echo(); r.Status != http.StatusOK || !ok || e.Body != tc.body {
				t.Errorf("POST %s on the relaxed route: %d %s; want it forwarded as sent", tc.body, r.Status, r.Body)
			}
		})
	}
	if r := post("/v1/pets", `{"name":"Rex","status":"sold"}`); r.Status != http.StatusOK {
		t.Errorf("a strict body: %d %s; want 200", r.Status, r.Body)
	}
	t.Run("response", func(t *testing.T) {
		body := `{"secret":"s1","secret":"s2"}`
		r := harness.Send(t, c, harness.Request{URL: m.URL() + "/v1/pets/1", Headers: []string{
			"x-echo-content-type: application/json", "x-echo-body: " + body}})
		if r.Status != http.StatusBadGateway || strings.Contains(string(r.Body), "s1") || strings.Contains(string(r.Body), "s2") {
			t.Errorf("response %s on a redaction route: %d %s; want 502 without it", body, r.Status, r.Body)
		}
		r = harness.Send(t, c, harness.Request{URL: m.URL() + "/legacy/pets/1", Headers: []string{
			"x-echo-content-type: application/json", "x-echo-body: " + body}})
		if r.Status != http.StatusOK || string(r.Body) != `{"secret":"[REDACTED]","secret":"[REDACTED]"}` {
			t.Errorf("response %s on the relaxed route: %d %s; want both members masked", body, r.Status, r.Body)
		}
	})
}

// testEncodedPath: /v1/pets/%34%32 is /v1/pets/42, and a parameter with
// an encoded space is validated decoded; an encoded slash never reaches
// the upstream as a parameter.
func testEncodedPath(t *testing.T, m *harness.Mesh) {
	up := m.Upstreams["echo"]
	c := harness.HTTP1()
	for _, p := range []string{"/v1/pets/%34%32", "/v1/pets/by-name/Mr%20Rex"} {
		if r := harness.Send(t, c, harness.Request{URL: m.URL() + p}); r.Status != http.StatusOK {
			t.Errorf("GET %s: %d %s; want 200", p, r.Status, r.Body)
		}
	}
	if r := harness.Send(t, c, harness.Request{URL: m.URL() + "/v1/pets/by-name/Mr%2520Rex"}); r.Status != http.StatusBadRequest {
		t.Errorf("GET /v1/pets/by-name/Mr%%2520Rex (decoded once: Mr%%20Rex): %d %s; want 400", r.Status, r.Body)
	}
	before := up.Count()
	if r := harness.Send(t, c, harness.Request{URL: m.URL() + "/v1/pets/by-name/a%2Fb"}); r.Status == http.StatusOK {
		t.Errorf("GET /v1/pets/by-name/a%%2Fb: %d %s; want it refused or redirected", r.Status, r.Body)
	}
	if n := up.Count() - before; n != 0 {
		t.Errorf("the upstream saw %d requests with an encoded slash", n)
	}
}

// testIdempotencyHeld: a keyed POST reaches the upstream, the client
// resets: the key stays held, so an immediate retry gets 409 and the
// upstream runs the order once; once lockTimeout (3s) passes a retry runs.
// A retry while the first is in flight gets 409 and, once the first has
// answered, its replay.
func testIdempotencyHeld(t *testing.T, m *harness.Mesh) {
	up := m.Upstreams["echo"]
	body := `{"name":"Rex","status":"available"}`
	send := func(c *http.Client, key string, extra ...string) (*harness.Response, error) {
		return harness.TrySend(c, harness.Request{Method: "POST", URL: m.URL() + "/v1/pets", Body: body,
			Headers: append([]string{"content-type: application/json", "idempotency-key: " + key}, extra...)})
	}
	impatient := harness.HTTP1()
	impatient.Timeout = 500 * time.Millisecond

	key := fmt.Sprintf("reset-%d", time.Now().UnixNano())
	before := up.Count()
	if r, err := send(impatient, key, "x-echo-delay: 2s"); err == nil {
		t.Fatalf("first POST answered %d before the client gave up; want a client timeout", r.Status)
	}
	// The request reached the upstream before the client reset.
	eventually(t, "the first request at the upstream", func() bool { return up.Count()-before == 1 })
	r, err := send(harness.HTTP1(), key)
	if err != nil || r.Status != http.StatusConflict {
		t.Fatalf("retry after a reset past forwarding: %s; want 409", describe(r, err))
	}
	if n := up.Count() - before; n != 1 {
		t.Errorf("the upstream ran the order %d times; want once", n)
	}
	if n := m.Gatehouse[0].Metric("gatehouse_extproc_idempotency_total", "route", "pets", "result", "held"); n < 1 {
		t.Errorf("gatehouse_extproc_idempotency_total{result=held} = %v; want the held key counted", n)
	}
	eventually(t, "the key freed after lockTimeout", func() bool {
		r, err := send(harness.HTTP1(), key)
		return err == nil && r.Status == http.StatusOK
	})

	// ext_authz refuses the request: the key is either never claimed
	// (idempotency runs in the ext_proc stage after ext_authz) or freed
	// when Envoy's local reply passes back through ext_proc, so the retry
	// is refused by ext_authz again, not held at 409 for lockTimeout (30s).
	key = fmt.Sprintf("denied-%d", time.Now().UnixNano())
	for i := range 2 {
		r, err := harness.TrySend(harness.HTTP1(), harness.Request{Method: "POST", URL: m.URL() + "/secure/orders", Body: body,
			Headers: []string{"content-type: application/json", "idempotency-key: " + key, "authorization: Bearer not-a-token"}})
		if err != nil || r.Status != http.StatusUnauthorized {
			t.Errorf("keyed POST %d refused by ext_authz: %s; want 401", i+1, describe(r, err))
		}
	}

	// Reset before the request went on (Envoy still buffering its body):
	// nothing ran, and a retry runs at once.
	key = fmt.Sprintf("early-%d", time.Now().UnixNano())
	conn, err := net.Dial("tcp", strings.TrimPrefix(m.URL(), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "POST /v1/pets HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\nIdempotency-Key: %s\r\nContent-Length: %d\r\n\r\n%s",
		key, len(body), body[:10])
	time.Sleep(300 * time.Millisecond) // Envoy has the headers and part of the body
	conn.Close()
	before = up.Count()
	if r, err := send(harness.HTTP1(), key); err != nil || r.Status != http.StatusOK {
		t.Errorf("retry after a reset before forwarding: %s; want 200", describe(r, err))
	}
	if n := up.Count() - before; n != 1 {
		t.Errorf("the upstream saw %d requests; want the retry only", n)
	}

	// In flight, then answered: 409 meanwhile, the replay after.
	key = fmt.Sprintf("inflight-%d", time.Now().UnixNano())
	before = up.Count()
	var wg sync.WaitGroup
	var first *harness.Response
	wg.Add(1)
	go func() {
		defer wg.Done()
		first, _ = send(harness.HTTP1(), key, "x-echo-delay: 1s")
	}()
	eventually(t, "the first request at the upstream", func() bool { return up.Count()-before == 1 })
	if r, err := send(harness.HTTP1(), key); err != nil || r.Status != http.StatusConflict {
		t.Errorf("retry while in flight: %s; want 409", describe(r, err))
	}
	wg.Wait()
	if first == nil || first.Status != http.StatusOK {
		t.Fatalf("first request: %s; want 200", describe(first, nil))
	}
	r, err = send(harness.HTTP1(), key)
	if err != nil || r.Status != http.StatusOK || r.Header.Get("idempotent-replayed") != "true" || string(r.Body) != string(first.Body) {
		t.Errorf("retry after the answer: %s; want the first answer replayed (idempotent-replayed: true)", describe(r, err))
	}
	if n := up.Count() - before; n != 1 {
		t.Errorf("the upstream ran the order %d times; want once", n)
	}
}

func describe(r *harness.Response, err error) string {
	switch {
	case err != nil:
		return err.Error()
	case r == nil:
		return "no answer"
	}
	return fmt.Sprintf("%d %s", r.Status, r.Body)
}
