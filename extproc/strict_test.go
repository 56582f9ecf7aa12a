package extproc

import (
	"strings"
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/gatehouse/gatehouse/internal/component"
)

const petSpec = `
openapi: 3.0.3
info: {title: Pets, version: "1"}
servers: [{url: /v1}]
paths:
  /pets:
    post:
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              required: [name, status]
              properties:
                name: {type: string}
                status: {type: string, enum: [available, pending, sold]}
                email: {type: string, format: email}
      responses:
        "201": {description: created, content: {application/json: {schema: {type: object}}}}
  /pets/{petId}:
    get:
      parameters: [{name: petId, in: path, required: true, schema: {type: integer, minimum: 1}}]
      responses:
        "200": {description: ok, content: {application/json: {schema: {type: object}}}}
`

var strictConfig = `
extproc: {}
routes:
  - id: pets
    match: {prefix: /v1}
    extproc:
      openapi:
        spec: |
` + indent(petSpec, "          ") + `
      redact: {paths: [$.secret]}
  - id: legacy
    match: {prefix: /legacy}
    extproc:
      openapi:
        basePath: /legacy
        spec: |
` + indent(petSpec, "          ") + `
      redact: {paths: [$.secret]}
      json: {trailingData: allow, duplicateNames: allow, invalidUTF8: allow}
  - id: noformats
    match: {prefix: /nf}
    extproc:
      openapi:
        basePath: /nf
        checkFormats: false
        spec: |
` + indent(petSpec, "          ") + `
`

func postPets(route, path string) []string {
	return []string{":authority", "api", ":path", path, ":method", "POST", "content-type", "application/json"}
}

// TestStrictJSONRoutes: through the stream, a request body with two JSON
// texts, a duplicated member or a string that is not UTF-8 is refused with a problem that says which,
// and so is a response body on a redaction route; a route that relaxes
// the rules lets both through (and masks the relaxed response all
// through).
func TestStrictJSONRoutes(t *testing.T) {
	s, reg := testServer(t, testConfig(t, strictConfig), component.Deps{})
	for _, tc := range []struct {
		name, body, detail, pointer string
	}{
		{name: "two texts", body: `{"name":"Rex","status":"sold"} {"x":1}`, detail: "data follows the JSON text; a body is one JSON text (RFC 8259 §2)"},
		{name: "duplicate", body: `{"name":"Rex","status":"lost","status":"sold"}`, pointer: "/status",
			detail: "this member is named twice in its object; names must be unique (I-JSON, RFC 7493 §2.3)"},
		// The validator would read "Rex\ufffd"; the upstream reads the byte.
		{name: "invalid utf8", body: "{\"name\":\"Rex\xff\",\"status\":\"sold\"}",
			detail: "the string at byte 8 is not valid UTF-8; JSON text is UTF-8 (RFC 8259 §8.1)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := mustExchange(t, s, requestHeaders("pets", false, buffered, postPets("pets", "/v1/pets")...), requestBody(tc.body, true))
			code, p := problemOf(t, out[len(out)-1])
			if code != 400 || len(p.Errors) != 1 || p.Errors[0].Detail != tc.detail || p.Errors[0].Pointer != tc.pointer {
				t.Fatalf("POST %s = %d %+v; want 400 saying %q at %q", tc.body, code, p, tc.detail, tc.pointer)
			}
			legacy := mustExchange(t, s, requestHeaders("legacy", false, buffered, postPets("legacy", "/legacy/pets")...), requestBody(tc.body, true))
			if legacy[len(legacy)-1].GetRequestBody() == nil {
				t.Fatalf("POST %s on the relaxed route = %v; want it to go on", tc.body, legacy[len(legacy)-1])
			}
		})
	}

	get := func(route, path string) []string {
		return []string{":authority", "api", ":path", path, ":method", "GET"}
	}
	for _, tc := range []struct{ name, body, reason string }{
		{name: "two texts", body: `{"secret":"s1"} {"secret":"s2"}`, reason: "trailing_data"},
		{name: "duplicate", body: `{"secret":"s1","secret":"s2"}`, reason: "duplicate_names"},
	} {
		t.Run("response "+tc.name, func(t *testing.T) {
			out := mustExchange(t, s, requestHeaders("pets", true, buffered, get("pets", "/v1/pets/1")...),
				responseHeaders(false, ":status", "200", "content-type", "application/json"), responseBody(tc.body, true))
			if code, p := problemOf(t, out[len(out)-1]); code != 502 || p.Type != problemUninspected {
				t.Fatalf("response %s = %d %+v; want 502 %s", tc.body, code, p, problemUninspected)
			}
			if n := counter(t, reg, "gatehouse_extproc_bodies_total", "route", "pets", "reason", tc.reason, "action", "rejected"); n != 1 {
				t.Errorf("bodies_total{reason=%s,action=rejected} = %v; want 1", tc.reason, n)
			}
			out = mustExchange(t, s, requestHeaders("legacy", true, buffered, get("legacy", "/legacy/pets/1")...),
				responseHeaders(false, ":status", "200", "content-type", "application/json"), responseBody(tc.body, true))
			if got, ok := bodyOf(out[len(out)-1]); !ok || strings.Contains(got, `"s1"`) || strings.Contains(got, `"s2"`) {
				t.Errorf("relaxed response %s = %q (replaced %v); want every secret masked", tc.body, got, ok)
			}
		})
	}
}

// TestFormatsRoute: a route's document checks formats unless the route
// turns them off; the two routes share the document but not the setting.
func TestFormatsRoute(t *testing.T) {
	s, _ := testServer(t, testConfig(t, strictConfig), component.Deps{})
	body := `{"name":"Rex","status":"sold","email":"not-an-address"}`
	out := mustExchange(t, s, requestHeaders("pets", false, buffered, postPets("pets", "/v1/pets")...), requestBody(body, true))
	if code, p := problemOf(t, out[len(out)-1]); code != 400 || len(p.Errors) != 1 || p.Errors[0].Pointer != "/email" {
		t.Fatalf("bad e-mail = %d %+v; want 400 at /email", code, p)
	}
	out = mustExchange(t, s, requestHeaders("noformats", false, buffered, postPets("noformats", "/nf/pets")...), requestBody(body, true))
	if out[len(out)-1].GetRequestBody() == nil {
		t.Fatalf("bad e-mail with checkFormats false = %v; want it to go on", out[len(out)-1])
	}
}

// TestEncodedPathRoute: /v1/pets/%34%32 is /v1/pets/42 and goes on; an
// encoded slash in a parameter is refused.
func TestEncodedPathRoute(t *testing.T) {
	s, _ := testServer(t, testConfig(t, strictConfig), component.Deps{})
	get := func(path string) *extprocv3.ProcessingResponse {
		out := mustExchange(t, s, requestHeaders("pets", true, buffered, ":authority", "api", ":path", path, ":method", "GET"))
		return out[len(out)-1]
	}
	if r := get("/v1/pets/%34%32"); r.GetRequestHeaders() == nil {
		t.Errorf("GET /v1/pets/%%34%%32 = %v; want it to go on", r)
	}
	if code, p := problemOf(t, get("/v1/pets/4%2F2")); code != 400 || len(p.Errors) != 1 || p.Errors[0].Name != "petId" {
		t.Errorf("GET /v1/pets/4%%2F2 = %d %+v; want 400 naming petId", code, p)
	}
}
