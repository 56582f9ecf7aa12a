package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func loadExtProc(t *testing.T, body string) (*Config, error) {
	t.Helper()
	return LoadBytes("gh.yaml", []byte("apiVersion: gatehouse/v1\n"+body), LoadOptions{})
}

func TestExtProcNeeds(t *testing.T) {
	off := ExtProcNeeds{Disabled: true, RequestBody: BodyNone, ResponseBody: BodyNone}
	tests := []struct {
		name, route string
		noSection   bool
		want        ExtProcNeeds
	}{
		{name: "no extproc part", route: "{}", want: off},
		{name: "no processors", route: "{extproc: {}}", want: off},
		{name: "component off", route: "{extproc: {hygiene: {}}}", noSection: true, want: off},
		{name: "hygiene: headers only", route: "{extproc: {hygiene: {}}}",
			want: ExtProcNeeds{RequestHeaders: true, ResponseHeaders: true, RequestBody: BodyNone, ResponseBody: BodyNone,
				ResponseHeadersToRemove: []string{"x-envoy-upstream-service-time"}}},
		{name: "openapi without bodies: request headers only", route: "{extproc: {openapi: {spec: x, requestBody: false}}}",
			want: ExtProcNeeds{RequestHeaders: true, RequestBody: BodyNone, ResponseBody: BodyNone}},
		{name: "openapi with bodies", route: "{extproc: {openapi: {spec: x}}}",
			want: ExtProcNeeds{RequestHeaders: true, RequestBody: BodyBuffered, ResponseBody: BodyNone, MaxBodyBytes: 1 << 20}},
		{name: "openapi responses report-only never block", route: "{extproc: {openapi: {spec: x, requestBody: false, validateResponses: true}}}",
			want: ExtProcNeeds{RequestHeaders: true, ResponseHeaders: true, RequestBody: BodyNone, ResponseBody: BodyBufferedPartial, MaxBodyBytes: 1 << 20}},
		{name: "redaction", route: "{extproc: {redact: {}}}",
			want: ExtProcNeeds{RequestHeaders: true, ResponseHeaders: true, RequestBody: BodyNone, ResponseBody: BodyBuffered, MaxBodyBytes: 1 << 20}},
		{name: "redaction that skips large bodies", route: "{extproc: {redact: {}, onLargeBody: skip}}",
			want: ExtProcNeeds{RequestHeaders: true, ResponseHeaders: true, RequestBody: BodyNone, ResponseBody: BodyBufferedPartial, MaxBodyBytes: 1 << 20}},
		{name: "idempotency", route: "{extproc: {idempotency: {}}}",
			want: ExtProcNeeds{RequestHeaders: true, ResponseHeaders: true, RequestBody: BodyBuffered, ResponseBody: BodyBufferedPartial, MaxBodyBytes: 1 << 20}},
		{name: "a route's own body limit", route: "{extproc: {redact: {}, maxBodySize: 64KiB}}",
			want: ExtProcNeeds{RequestHeaders: true, ResponseHeaders: true, RequestBody: BodyNone, ResponseBody: BodyBuffered, MaxBodyBytes: 64 << 10}},
		{name: "idempotency and redaction", route: "{extproc: {idempotency: {}, redact: {}}}",
			want: ExtProcNeeds{RequestHeaders: true, ResponseHeaders: true, RequestBody: BodyBuffered, ResponseBody: BodyBuffered, MaxBodyBytes: 1 << 20}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := loadExtProc(t, "extproc: {}\nroutes:\n  - {id: r, match: {prefix: /}, "+strings.TrimSuffix(strings.TrimPrefix(tc.route, "{"), "}")+"}\n")
			if err != nil {
				t.Fatal(err)
			}
			if tc.noSection {
				cfg.ExtProc = nil // invalid as a file (TestExtProcValidation); needs must still be off
			}
			if diff := cmp.Diff(tc.want, cfg.Routes[0].ExtProcNeeds(cfg)); diff != "" {
				t.Errorf("ExtProcNeeds mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestExtProcTimeoutAgainstEnvoy(t *testing.T) {
	_, err := loadExtProc(t, "extproc: {messageTimeout: 600ms}\nxds: {services: {extprocMessageTimeout: 500ms}}\n")
	want := `gh.yaml:3: xds.services.extprocMessageTimeout: 500ms must be longer than extproc.messageTimeout (600ms)`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("LoadBytes() = %v; want %q", err, want)
	}
}

func TestExtProcDefaults(t *testing.T) {
	cfg, err := loadExtProc(t, "extproc: {}\nroutes:\n  - id: r\n    match: {prefix: /}\n    extproc: {hygiene: {}, redact: {}, idempotency: {}, openapi: {spec: x}}\n")
	if err != nil {
		t.Fatal(err)
	}
	e := cfg.ExtProc
	if e.Address != "127.0.0.1:9192" || e.MessageTimeout.D().String() != "150ms" || e.MaxBodySize != 1<<20 ||
		!e.Hygiene.StripServerHeaders || e.Hygiene.SecurityHeaders.ContentTypeOptions != "nosniff" || e.Idempotency.MemoryMaxKeys != 100000 {
		t.Errorf("component defaults = %+v", e)
	}
	r := cfg.Routes[0].ExtProc
	if r.OnLargeBody != LargeBodyReject || r.Redact.Mask != "[REDACTED]" || !r.Redact.Detectors.Email || !r.Redact.Detectors.Cards ||
		r.Idempotency.Header != "idempotency-key" || r.Idempotency.TTL.D().String() != "24h0m0s" || r.Idempotency.FailureMode != FailClosed ||
		!r.OpenAPI.RequestBody || r.OpenAPI.ValidateResponses {
		t.Errorf("route defaults = %+v", r)
	}
	if got := r.Idempotency.IdempotentMethods(); !cmp.Equal(got, []string{"POST", "PATCH"}) {
		t.Errorf("IdempotentMethods() = %v", got)
	}
	if r.BodyLimit(cfg) != 1<<20 {
		t.Errorf("BodyLimit = %d", r.BodyLimit(cfg))
	}
}

func TestExtProcValidation(t *testing.T) {
	tests := []struct {
		name, body string
		want       []string
	}{
		{
			name: "route processors without the component",
			body: "routes:\n  - id: r\n    match: {prefix: /}\n    extproc: {hygiene: {}}\n",
			want: []string{"gh.yaml:5: routes[0].extproc: the route turns on ext_proc processors but the config has no top-level extproc: section"},
		},
		{
			name: "component fields",
			body: "extproc:\n  messageTimeout: 0s\n  maxBodySize: 8MiB\n  hygiene:\n    internalHeaders: [X-Upper]\n    securityHeaders: {extra: {\"bad header\": v}}\n  idempotency: {memoryMaxKeys: 0}\n",
			want: []string{
				"gh.yaml:3: extproc.messageTimeout: 0s is too short",
				"gh.yaml:4: extproc.maxBodySize: 8MiB is larger than server.grpc.maxRecvMessageSize",
				`gh.yaml:6: extproc.hygiene.internalHeaders[0]: "X-Upper" is not a lower-case header name`,
				`extproc.hygiene.securityHeaders.extra["bad header"]: "bad header" is not a lower-case header name`,
				"gh.yaml:8: extproc.idempotency.memoryMaxKeys: must be at least 1",
			},
		},
		{
			// Envoy drops (and counts in ext_proc.rejected_header_mutations)
			// an ext_proc mutation of its own headers: found by the real
			// Envoy end-to-end tests.
			name: "headers Envoy does not let ext_proc change",
			body: "extproc:\n  hygiene:\n    internalHeaders: [x-envoy-*]\n    stripResponseHeaders: [x-envoy-upstream-service-time, host]\n    securityHeaders: {extra: {x-envoy-decorator-operation: v}}\n",
			want: []string{
				`gh.yaml:4: extproc.hygiene.internalHeaders[0]: "x-envoy-*" is a header Envoy does not let ext_proc change`,
				`gh.yaml:5: extproc.hygiene.stripResponseHeaders[0]: "x-envoy-upstream-service-time" is a header Envoy does not let ext_proc change`,
				`gh.yaml:5: extproc.hygiene.stripResponseHeaders[1]: "host" is a header Envoy does not let ext_proc change`,
				`gh.yaml:6: extproc.hygiene.securityHeaders.extra.x-envoy-decorator-operation: "x-envoy-decorator-operation" is a header Envoy does not let ext_proc change`,
			},
		},
		{
			name: "route fields",
			body: "extproc: {}\nroutes:\n  - id: r\n    match: {prefix: /}\n    extproc:\n      openapi: {}\n      redact:\n        paths: [user.email]\n        nationalIdPatterns: ['(']\n" +
				"      idempotency: {methods: [GET, post], ttl: 1m, lockTimeout: 2m, header: 'Idem Key'}\n      onLargeBody: drop\n",
			want: []string{
				`routes[0].extproc.onLargeBody: "drop" is not a large body action; use skip|reject`,
				"routes[0].extproc.openapi: set spec (the document inline) or file (its path)",
				`routes[0].extproc.redact.paths[0]: "user.email" is not a JSONPath`,
				`routes[0].extproc.redact.nationalIdPatterns[0]: "(" is not a valid RE2 expression`,
				"routes[0].extproc.idempotency.methods[0]: GET is a safe method",
				`routes[0].extproc.idempotency.methods[1]: "post" is not an HTTP method`,
				"routes[0].extproc.idempotency.lockTimeout: 2m0s is longer than ttl (1m0s)",
				`routes[0].extproc.idempotency.header: "Idem Key" is not a lower-case header name`,
			},
		},
		{
			name: "empty extproc part warns",
			body: "extproc: {}\nroutes:\n  - id: r\n    match: {prefix: /}\n    extproc: {}\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := loadExtProc(t, tc.body)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("load = %v; want no error", err)
				}
				if len(cfg.Warnings) != 1 || !strings.Contains(cfg.Warnings[0].Error(), "no processor is turned on") {
					t.Errorf("warnings = %v", cfg.Warnings)
				}
				return
			}
			if err == nil {
				t.Fatalf("load = nil error; want %d problems", len(tc.want))
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("errors lack %q; got:\n%v", w, err)
				}
			}
		})
	}
}

// TestExtProcStrictness: strict JSON and format checks are the defaults;
// each is relaxed by name, and a mistyped rule says what is valid.
func TestExtProcStrictness(t *testing.T) {
	cfg, err := loadExtProc(t, "extproc: {}\nroutes:\n  - id: a\n    match: {prefix: /}\n    extproc: {openapi: {spec: x}}\n")
	if err != nil {
		t.Fatal(err)
	}
	e := cfg.Routes[0].ExtProc
	if e.JSON.TrailingData != JSONReject || e.JSON.DuplicateNames != JSONReject || !e.OpenAPI.CheckFormats {
		t.Errorf("defaults: json %+v, checkFormats %v; want reject, reject, true", e.JSON, e.OpenAPI.CheckFormats)
	}
	cfg, err = loadExtProc(t, "extproc: {}\nroutes:\n  - id: a\n    match: {prefix: /}\n    extproc:\n      openapi: {spec: x, checkFormats: false}\n      json: {trailingData: allow, duplicateNames: allow}\n")
	if err != nil {
		t.Fatal(err)
	}
	if e := cfg.Routes[0].ExtProc; e.JSON.TrailingData != JSONAllow || e.JSON.DuplicateNames != JSONAllow || e.OpenAPI.CheckFormats {
		t.Errorf("relaxed: json %+v, checkFormats %v", e.JSON, e.OpenAPI.CheckFormats)
	}
	_, err = loadExtProc(t, "extproc: {}\nroutes:\n  - id: a\n    match: {prefix: /}\n    extproc:\n      openapi: {spec: x}\n      json: {duplicateNames: first}\n")
	if err == nil || !strings.Contains(err.Error(), `gh.yaml:8: routes[0].extproc.json.duplicateNames: "first" is not a JSON rule; use reject|allow`) {
		t.Errorf("mistyped rule: %v", err)
	}
}

// TestExtProcJSONRulesWithoutBodies: relaxing JSON rules where no body is
// read is worth a warning, not an error.
func TestExtProcJSONRulesWithoutBodies(t *testing.T) {
	cfg, err := loadExtProc(t, "extproc: {}\nroutes:\n  - id: a\n    match: {prefix: /}\n    extproc:\n      hygiene: {}\n      json: {trailingData: allow}\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) != 1 || !strings.Contains(cfg.Warnings[0].Error(), "routes[0].extproc.json: relaxes JSON rules on a route that reads no JSON body") {
		t.Errorf("warnings = %v; want one about routes[0].extproc.json", cfg.Warnings)
	}
}
