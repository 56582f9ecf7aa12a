package openapi

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse/gatehouse/internal/jsonx"
)

func load(t testing.TB) *Contract {
	t.Helper()
	data, err := os.ReadFile("testdata/orders.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Load(context.Background(), Source{Data: data}, Settings{})
	if err != nil {
		t.Fatalf("Load(orders.yaml) = %v", err)
	}
	return c
}

func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

const goodOrder = `{"customer":"c-1","items":[{"sku":"ABC-1234","qty":2}]}`

func TestValidateRequest(t *testing.T) {
	c := load(t)
	tests := []struct {
		name string
		req  Request
		want []Violation
	}{
		{name: "valid post", req: Request{Method: "POST", Path: "/v1/orders?dry_run=true",
			Header: hdr("Content-Type", "application/json", "X-Tenant", "acme"), Body: []byte(goodOrder), BodyChecked: true}},
		{name: "valid get", req: Request{Method: "GET", Path: "/v1/orders/42"}},
		{name: "body not checked", req: Request{Method: "POST", Path: "/v1/orders", Header: hdr("X-Tenant", "acme")}},
		{name: "unknown path", req: Request{Method: "GET", Path: "/v1/nope"},
			want: []Violation{{In: "operation", Detail: "no operation of the API matches GET /v1/nope"}}},
		{name: "no base path", req: Request{Method: "GET", Path: "/orders/42"},
			want: []Violation{{In: "operation", Detail: "no operation of the API matches GET /orders/42"}}},
		{name: "method", req: Request{Method: "DELETE", Path: "/v1/orders/42"},
			want: []Violation{{In: "operation", Detail: "the API does not allow DELETE on /v1/orders/42"}}},
		{name: "path param", req: Request{Method: "GET", Path: "/v1/orders/0"},
			want: []Violation{{In: "path", Name: "id", Detail: "number must be at least 1"}}},
		{name: "query and header", req: Request{Method: "POST", Path: "/v1/orders?dry_run=maybe",
			Header: hdr("Content-Type", "application/json"), Body: []byte(goodOrder), BodyChecked: true},
			want: []Violation{
				{In: "query", Name: "dry_run", Detail: "an invalid boolean"},
				{In: "header", Name: "x-tenant", Detail: "is required but missing"},
			}},
		{name: "body schema", req: Request{Method: "POST", Path: "/v1/orders",
			Header: hdr("Content-Type", "application/json", "X-Tenant", "acme"),
			Body:   []byte(`{"customer":"","items":[{"sku":"abc","qty":0},{"qty":"x"}],"extra":1}`), BodyChecked: true},
			want: []Violation{
				{In: "body", Pointer: "/customer", Detail: "minimum string length is 1"},
				{In: "body", Pointer: "/items/0/sku", Detail: `string doesn't match the regular expression "^[A-Z]{3}-[0-9]{4}$"`},
				{In: "body", Pointer: "/items/0/qty", Detail: "number must be at least 1"},
				{In: "body", Pointer: "/items/1/sku", Detail: `property "sku" is missing`},
				{In: "body", Pointer: "/items/1/qty", Detail: "value must be an integer"},
				{In: "body", Detail: `property "extra" is unsupported`},
			}},
		{name: "body not json", req: Request{Method: "POST", Path: "/v1/orders",
			Header: hdr("Content-Type", "application/json", "X-Tenant", "acme"), Body: []byte(`{"customer":`), BodyChecked: true},
			want: []Violation{{In: "body", Detail: "the body cannot be parsed: unexpected EOF"}}},
		{name: "content type not echoed", req: Request{Method: "POST", Path: "/v1/orders",
			Header: hdr("Content-Type", "text/x-secret-value", "X-Tenant", "acme"), Body: []byte(`x`), BodyChecked: true},
			want: []Violation{{In: "body", Detail: "header Content-Type is not a media type the operation declares"}}},
		{name: "body missing", req: Request{Method: "POST", Path: "/v1/orders",
			Header: hdr("Content-Type", "application/json", "X-Tenant", "acme"), BodyChecked: true},
			want: []Violation{{In: "body", Detail: "is required but missing"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, got := c.ValidateRequest(context.Background(), tc.req)
			if diff := cmp.Diff(tc.want, got, sortViolations); diff != "" {
				t.Errorf("ValidateRequest(%s %s) mismatch (-want +got):\n%s", tc.req.Method, tc.req.Path, diff)
			}
		})
	}
}

var sortViolations = cmp.Transformer("sort", func(in []Violation) map[Violation]bool {
	m := map[Violation]bool{}
	for _, v := range in {
		m[v] = true
	}
	return m
})

func TestValidateResponse(t *testing.T) {
	c := load(t)
	m, vs := c.ValidateRequest(context.Background(), Request{Method: "GET", Path: "/v1/orders/42"})
	if len(vs) != 0 {
		t.Fatalf("ValidateRequest = %v", vs)
	}
	json := hdr("Content-Type", "application/json")
	if got := c.ValidateResponse(context.Background(), m, 200, json, []byte(`{"id":42,"status":"paid"}`), true); len(got) != 0 {
		t.Errorf("ValidateResponse(valid) = %v; want none", got)
	}
	got := c.ValidateResponse(context.Background(), m, 200, json, []byte(`{"id":"x","status":"lost"}`), true)
	if len(got) != 2 {
		t.Errorf("ValidateResponse(bad body) = %v; want 2 violations", got)
	}
	got = c.ValidateResponse(context.Background(), m, 200, hdr("Content-Type", "text/x-secret-value"), []byte(`x`), true)
	if len(got) != 1 || strings.Contains(got[0].Detail, "secret") {
		t.Errorf("ValidateResponse(text/x-secret-value) = %v; want one violation that does not echo the media type", got)
	}
	if got := c.ValidateResponse(context.Background(), m, 418, json, nil, true); len(got) != 1 || got[0].In != "status" {
		t.Errorf("ValidateResponse(418) = %v; want a status violation", got)
	}
	if got := c.ValidateResponse(context.Background(), nil, 200, json, nil, true); got != nil {
		t.Errorf("ValidateResponse(no match) = %v; want nil", got)
	}
}

func TestLoadErrors(t *testing.T) {
	broken, _ := os.ReadFile("testdata/broken.yaml")
	tests := []struct {
		name, doc string
		line      int
		contains  string
	}{
		{name: "yaml syntax", doc: string(broken), line: 8, contains: "cannot parse"},
		{name: "not openapi", doc: "a: 1\n", contains: "openapi field"},
		{name: "invalid document", doc: "openapi: 3.0.3\ninfo: {title: x, version: '1'}\npaths:\n  /a:\n    get:\n      responses: {}\n", contains: "invalid OpenAPI document"},
		{name: "bad ref", doc: "openapi: 3.0.3\ninfo: {title: x, version: '1'}\npaths:\n  /a:\n    get:\n      responses:\n        '200': {$ref: '#/components/responses/nope'}\n", contains: "nope"},
		{name: "remote ref", doc: "openapi: 3.0.3\ninfo: {title: x, version: '1'}\npaths:\n  /a:\n    get:\n      responses:\n        '200': {$ref: 'http://127.0.0.1:1/x.yaml'}\n", contains: "x.yaml"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(context.Background(), Source{Data: []byte(tc.doc)}, Settings{})
			le, ok := err.(*LoadError)
			if !ok {
				t.Fatalf("Load = %v (%T); want a *LoadError", err, err)
			}
			if !strings.Contains(le.Msg, tc.contains) || le.Line != tc.line {
				t.Errorf("Load = line %d %q; want line %d and %q", le.Line, le.Msg, tc.line, tc.contains)
			}
		})
	}
}

func TestLoadFileRefs(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "schemas.yaml"), []byte("Thing:\n  type: object\n  required: [a]\n  properties: {a: {type: integer}}\n"), 0o644)
	main := "openapi: 3.0.3\ninfo: {title: x, version: '1'}\npaths:\n  /t:\n    post:\n      requestBody:\n        content:\n          application/json:\n            schema: {$ref: 'schemas.yaml#/Thing'}\n      responses: {'204': {description: ok}}\n"
	file := filepath.Join(dir, "api.yaml")
	os.WriteFile(file, []byte(main), 0o644)
	c, err := Load(context.Background(), Source{Data: []byte(main), File: file}, Settings{BasePath: "/api"})
	if err != nil {
		t.Fatalf("Load(file with refs) = %v", err)
	}
	_, vs := c.ValidateRequest(context.Background(), Request{Method: "POST", Path: "/api/t", Header: hdr("Content-Type", "application/json"), Body: []byte(`{"a":"x"}`), BodyChecked: true})
	if len(vs) != 1 || vs[0].Pointer != "/a" {
		t.Errorf("ValidateRequest via file ref = %v; want /a violation", vs)
	}
	if got := c.Operations(); !cmp.Equal(got, []string{"POST /t"}) {
		t.Errorf("Operations() = %v", got)
	}
}

func FuzzValidateRequest(f *testing.F) {
	f.Add("POST", "/v1/orders?dry_run=1", "acme", []byte(goodOrder))
	f.Add("GET", "/v1/orders/%ff", "", []byte(nil))
	f.Add("POST", "/v1/orders", "a b", []byte(`{"items":[[[[[[[[[]]]]]]]]]}`))
	c := load(f)
	f.Fuzz(func(t *testing.T, method, path, tenant string, body []byte) {
		r := Request{Method: method, Path: path, Header: hdr("Content-Type", "application/json", "X-Tenant", tenant), Body: body, BodyChecked: true}
		m, vs := c.ValidateRequest(context.Background(), r)
		if len(vs) > MaxViolations {
			t.Fatalf("ValidateRequest returned %d violations; the bound is %d", len(vs), MaxViolations)
		}
		for _, v := range vs {
			if v.Detail == "" || v.In == "" {
				t.Fatalf("empty violation %+v", v)
			}
		}
		c.ValidateResponse(context.Background(), m, 201, hdr("Content-Type", "application/json"), body, true)
	})
}

func BenchmarkValidateRequest(b *testing.B) {
	for _, tc := range []struct {
		name  string
		rules jsonx.Rules
	}{{"strict", jsonx.Rules{}}, {"relaxed", jsonx.Rules{AllowTrailingData: true, AllowDuplicateNames: true}}} {
		b.Run(tc.name, func(b *testing.B) { benchValidate(b, tc.rules) })
	}
}

func benchValidate(b *testing.B, rules jsonx.Rules) {
	c := load(b)
	r := Request{Method: "POST", Path: "/v1/orders?dry_run=false",
		Header: hdr("Content-Type", "application/json", "X-Tenant", "acme"),
		Body:   []byte(`{"customer":"c-1","note":"leave at the door","items":[{"sku":"ABC-1234","qty":2},{"sku":"XYZ-0001","qty":10},{"sku":"QRS-9876","qty":1}]}`), BodyChecked: true,
		JSON: rules}
	b.ReportAllocs()
	c0 := cpuSeconds()
	for b.Loop() {
		if _, vs := c.ValidateRequest(context.Background(), r); vs != nil {
			b.Fatal(vs)
		}
	}
	// CPU time per validation: on a shared machine wall time also
	// measures the neighbours.
	b.ReportMetric((cpuSeconds()-c0)*1e6/float64(b.N), "cpu-µs/op")
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

func loadPetstore(t testing.TB, s Settings) *Contract {
	t.Helper()
	data, err := os.ReadFile("testdata/petstore.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Load(context.Background(), Source{Data: data}, s)
	if err != nil {
		t.Fatalf("Load(petstore.yaml) = %v", err)
	}
	return c
}

// TestStrictJSON: a body the validator and the upstream could read
// differently is refused, saying why; each rule can be relaxed.
func TestStrictJSON(t *testing.T) {
	c := loadPetstore(t, Settings{})
	post := func(body string, rules jsonx.Rules) Request {
		return Request{Method: "POST", Path: "/v1/pets", Header: hdr("Content-Type", "application/json"),
			Body: []byte(body), BodyChecked: true, JSON: rules}
	}
	trailing := Violation{In: "body", Detail: "data follows the JSON text; a body is one JSON text (RFC 8259 §2)"}
	dup := Violation{In: "body", Pointer: "/status", Detail: "this member is named twice in its object; names must be unique (I-JSON, RFC 7493 §2.3)"}
	tests := []struct {
		name string
		req  Request
		want []Violation
	}{
		{name: "one text", req: post(`{"name":"Rex","status":"sold"}`, jsonx.Rules{})},
		{name: "two texts", req: post(`{"name":"Rex","status":"sold"} {"x":1}`, jsonx.Rules{}), want: []Violation{trailing}},
		{name: "text then junk", req: post(`{"name":"Rex","status":"sold"}]`, jsonx.Rules{}), want: []Violation{trailing}},
		{name: "two texts allowed", req: post(`{"name":"Rex","status":"sold"} {"x":1}`, jsonx.Rules{AllowTrailingData: true})},
		{name: "duplicate member", req: post(`{"name":"Rex","status":"lost","status":"sold"}`, jsonx.Rules{}), want: []Violation{dup}},
		{name: "duplicate by escape", req: post(`{"name":"Rex","status":"lost","st\u0061tus":"sold"}`, jsonx.Rules{}), want: []Violation{dup}},
		{name: "duplicates allowed", req: post(`{"name":"Rex","status":"lost","status":"sold"}`, jsonx.Rules{AllowDuplicateNames: true})},
		{name: "not json is the parser's to say", req: post(`{"name":`, jsonx.Rules{}),
			want: []Violation{{In: "body", Detail: "the body cannot be parsed: unexpected EOF"}}},
		{name: "two texts no space", req: Request{Method: "POST", Path: "/v1/pets", Header: hdr("Content-Type", "application/json; charset=utf-8"),
			Body: []byte(`{"name":"Rex","status":"sold"}{}`), BodyChecked: true}, want: []Violation{trailing}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, got := c.ValidateRequest(context.Background(), tc.req)
			if diff := cmp.Diff(tc.want, got, sortViolations); diff != "" {
				t.Errorf("ValidateRequest(%s) mismatch (-want +got):\n%s", tc.req.Body, diff)
			}
		})
	}
}

// TestFormats: the string formats OpenAPI users rely on are checked, in
// bodies as in parameters, with details that never echo the value; a
// document can turn the checks off.
func TestFormats(t *testing.T) {
	good := map[string]string{
		"email": "jane.doe+pets@example.com", "email2": `"jane doe"@example.com`, "id": "123e4567-e89b-12d3-a456-426614174000",
		"homepage": "https://example.com/a?b=c#d", "host": "pets-1.example.com", "v4": "192.0.2.1",
		"v6": "2001:db8::1", "born": "2024-02-29", "seen": "2024-02-29T12:30:00.5+02:00", "avatar": "aGVsbG8=",
	}
	bad := map[string][]string{
		"email":    {"jane", "jane@", "@example.com", "Jane <jane@example.com>", "jane@@example.com", "a b@example.com", " jane@example.com", "jane@example.com (Jane)"},
		"id":       {"123e4567e89b12d3a456426614174000", "123e4567-e89b-12d3-a456-42661417400g", "{123e4567-e89b-12d3-a456-426614174000}"},
		"homepage": {"example.com/a", "/relative", "https://exa mple.com", "1http://x"},
		"host":     {"-pets.example.com", "pets_1.example.com", "a..b", strings.Repeat("a", 64) + ".com", ""},
		"v4":       {"192.0.2", "192.0.2.256", "192.0.2.01", "2001:db8::1"},
		"v6":       {"192.0.2.1", "2001:db8::g", "fe80::1%eth0"},
		"born":     {"2024-02-30", "2023-02-29", "24-02-01", "2024-2-1"},
		"seen":     {"2024-02-29", "2024-02-29T25:00:00Z", "2024-02-29T12:30:00", "2024-02-30T12:30:00Z"},
		"avatar":   {"aGVsbG8", "a$b=", "aGVsbG8=="},
	}
	post := func(field, value string) Request {
		b, _ := json.Marshal(map[string]string{field: value})
		return Request{Method: "POST", Path: "/v1/owners", Header: hdr("Content-Type", "application/json"), Body: b, BodyChecked: true}
	}
	c, off := loadPetstore(t, Settings{}), loadPetstore(t, Settings{IgnoreFormats: true})
	for field, v := range good {
		field = strings.TrimSuffix(field, "2")
		if _, vs := c.ValidateRequest(context.Background(), post(field, v)); len(vs) != 0 {
			t.Errorf("%s %q: %v; want valid", field, v, vs)
		}
	}
	for field, vs := range bad {
		for _, v := range vs {
			_, got := c.ValidateRequest(context.Background(), post(field, v))
			if len(got) != 1 || got[0].Pointer != "/"+field || !strings.Contains(got[0].Detail, "format") {
				t.Errorf("%s %q: %v; want one format violation at /%s", field, v, got, field)
				continue
			}
			if v != "" && len(v) > 2 && strings.Contains(got[0].Detail, v) {
				t.Errorf("%s %q: detail %q echoes the value", field, v, got[0].Detail)
			}
			if _, got := off.ValidateRequest(context.Background(), post(field, v)); len(got) != 0 {
				t.Errorf("formats off, %s %q: %v; want valid", field, v, got)
			}
		}
	}
}

// FuzzFormats: no format checker panics on any string, and none quotes
// what it was given.
func FuzzFormats(f *testing.F) {
	for _, s := range []string{"jane@example.com", "2024-02-29T23:59:60Z", "2024-02-29t12:00:00z", "::1", "a.b-c", "aGk=", "x:y", "123e4567-e89b-12d3-a456-426614174000"} {
		f.Add(s)
	}
	// Each checker's messages are fixed strings: those it gives for these.
	fixed := map[string]bool{}
	for _, name := range CheckedFormats() {
		for _, bad := range []string{"", "\x00", "2023-02-29", "2023-02-29T00:00:00Z"} {
			if err := formatCheckers[name](bad); err != nil {
				fixed[err.Error()] = true
			}
		}
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, name := range CheckedFormats() {
			if err := formatCheckers[name](s); err != nil && !fixed[err.Error()] {
				t.Fatalf("%s(%q) = %v, a message that depends on the value", name, s, err)
			}
		}
	})
}

// TestDecodedParameters: path and query parameters are validated as the
// upstream reads them, percent-decoded exactly once (RFC 3986 §6.2.2.2),
// and an encoded slash or backslash in a path parameter, which changes
// the path's structure for some reader, is refused.
func TestDecodedParameters(t *testing.T) {
	c := loadPetstore(t, Settings{})
	structure := func(name string) []Violation {
		return []Violation{{In: "path", Name: name, Detail: "holds an encoded / or \\ (%2F, %5C), which would change the path's structure"}}
	}
	tests := []struct {
		path string
		want []Violation
	}{
		{path: "/v1/pets/42"},
		{path: "/v1/pets/%34%32"},
		{path: "/v1/p%65ts/%34%32"},
		{path: "/v1/pets/by-name/%41%2541", want: []Violation{{In: "path", Name: "name", Detail: `string doesn't match the regular expression "^[A-Za-z é/.]+$"`}}},
		{path: "/v1/pets/%34%3", want: []Violation{{In: "path", Detail: "the request path is not a valid URI"}}},
		{path: "/v1/pets/%30", want: []Violation{{In: "path", Name: "petId", Detail: "number must be at least 1"}}},
		{path: "/v1/pets/by-name/Mr%20Rex"},
		{path: "/v1/pets/by-name/caf%C3%A9"},
		{path: "/v1/pets/by-name/Mr%2520Rex", want: []Violation{{In: "path", Name: "name", Detail: `string doesn't match the regular expression "^[A-Za-z é/.]+$"`}}},
		{path: "/v1/pets/by-name/a%2Fb", want: structure("name")},
		{path: "/v1/pets/by-name/a%2fb", want: structure("name")},
		{path: "/v1/pets/by-name/a%5Cb", want: structure("name")},
		{path: "/v1/pets/by-name/%2E%2E", want: []Violation{{In: "path", Name: "name", Detail: "is a dot segment (. or ..), which would change the path's structure"}}},
		{path: "/v1/pets/by-name/..", want: []Violation{{In: "path", Name: "name", Detail: "is a dot segment (. or ..), which would change the path's structure"}}},
		{path: "/v1/pets/by-name/%2E", want: []Violation{{In: "path", Name: "name", Detail: "is a dot segment (. or ..), which would change the path's structure"}}},
		{path: "/v1/pets?tag=good%20boy&limit=%31"},
		{path: "/v1/pets?tag=caf%C3%A9"},
		{path: "/v1/pets?tag=good%2520boy", want: []Violation{{In: "query", Name: "tag", Detail: `value is not one of the allowed values ["good boy","café"]`}}},
	}
	for _, tc := range tests {
		_, got := c.ValidateRequest(context.Background(), Request{Method: "GET", Path: tc.path})
		if diff := cmp.Diff(tc.want, got, sortViolations); diff != "" {
			t.Errorf("ValidateRequest(GET %s) mismatch (-want +got):\n%s", tc.path, diff)
		}
	}
}

// FuzzDecodeUnreserved: decoding the unreserved characters of a path
// changes no byte a full decoding reads, and doing it twice does nothing
// more: a path is decoded once.
func FuzzDecodeUnreserved(f *testing.F) {
	for _, s := range []string{"/v1/pets/%34%32", "/a%2Fb", "/%25%34%31", "/%zz%4", "/caf%C3%A9", "%7e%7E%2e"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		full, err := url.PathUnescape(p)
		if err != nil {
			return // refused before routing: not a valid URI
		}
		d := decodeUnreserved(p)
		if again := decodeUnreserved(d); again != d {
			t.Fatalf("decodeUnreserved(%q) = %q, then %q", p, d, again)
		}
		if got, err := url.PathUnescape(d); err != nil || got != full {
			t.Fatalf("PathUnescape(decodeUnreserved(%q)) = %q, %v; want %q", p, got, err, full)
		}
	})
}
