package hygiene

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse/gatehouse/internal/config"
)

func policy() *Policy {
	return New(config.Hygiene{
		InternalHeaders: []string{"x-internal-*", "x-debug"},
		SecurityHeaders: config.SecurityHeaders{
			StrictTransportSecurity: "max-age=31536000; includeSubDomains",
			ContentTypeOptions:      "nosniff",
			Extra:                   map[string]string{"cross-origin-resource-policy": "same-origin"},
		},
		StripServerHeaders:   true,
		StripResponseHeaders: []string{"x-backend"},
	}, &config.RouteHygiene{InternalHeaders: []string{"x-route-secret"}})
}

const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

func TestRequest(t *testing.T) {
	fixed := func() string { return "00-11111111111111111111111111111111-2222222222222222-00" }
	tests := []struct {
		name string
		in   []Header
		want RequestResult
	}{
		{
			name: "clean request keeps its ids",
			in:   []Header{{":path", "/"}, {"x-request-id", "abc-123"}, {"traceparent", tp}, {"tracestate", "a=b"}},
			want: RequestResult{RequestID: "abc-123", Traceparent: tp, TraceValid: true},
		},
		{
			name: "identity and internal headers stripped",
			in: []Header{
				{"x-request-id", "r1"}, {"traceparent", tp},
				{"x-gatehouse-subject", "admin"}, {"x-gatehouse-tier", "gold"}, {"x-gatehouse-future", "x"},
				{"x-internal-user", "1"}, {"x-debug", "1"}, {"x-route-secret", "s"}, {"x-debugger", "kept"},
				{"x-gatehouse-subject", "again"},
			},
			want: RequestResult{
				Remove:    []string{"x-gatehouse-subject", "x-gatehouse-tier", "x-gatehouse-future", "x-internal-user", "x-debug", "x-route-secret"},
				RequestID: "r1", Traceparent: tp, TraceValid: true,
			},
		},
		{
			name: "bad traceparent replaced and its tracestate dropped",
			in:   []Header{{"x-request-id", "r1"}, {"traceparent", "00-0000-bad"}, {"tracestate", "a=b"}},
			want: RequestResult{
				Remove:    []string{"tracestate"},
				Set:       []Header{{"traceparent", fixed()}},
				RequestID: "r1", Traceparent: fixed(),
			},
		},
		{
			name: "duplicate ids are not passed on unchecked",
			in: []Header{{"x-request-id", "bad id"}, {"x-request-id", "r2"}, {"traceparent", tp},
				{"traceparent", "00-zz"}, {"tracestate", "a=b"}},
			want: RequestResult{
				Remove:    []string{"tracestate"},
				Set:       []Header{{"x-request-id", "r2"}, {"traceparent", fixed()}},
				RequestID: "r2", Traceparent: fixed(),
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := policy().Request(tc.in, fixed)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Request(%v) mismatch (-want +got):\n%s", tc.in, diff)
			}
		})
	}
}

// TestEnvoyHeadersNeverInternal: a prefix that covers Envoy's own headers
// does not make hygiene ask Envoy to remove them, which Envoy refuses.
func TestEnvoyHeadersNeverInternal(t *testing.T) {
	p := New(config.Hygiene{InternalHeaders: []string{"x-*"}}, nil)
	for name, want := range map[string]bool{"x-secret": true, "x-envoy-retry-on": false, "host": false, "x-gatehouse-tier": true} {
		if got := p.IsInternal(name); got != want {
			t.Errorf("IsInternal(%q) = %v; want %v", name, got, want)
		}
	}
}

func TestRequestGeneratesID(t *testing.T) {
	for _, bad := range []string{"", "has space", "<script>", string(make([]byte, 129))} {
		in := []Header{{"traceparent", tp}}
		if bad != "" {
			in = append(in, Header{"x-request-id", bad})
		}
		got := policy().Request(in, NewTraceparent)
		if !ValidRequestID(got.RequestID) || got.RequestID == bad || len(got.Set) != 1 || got.Set[0] != (Header{"x-request-id", got.RequestID}) {
			t.Errorf("Request(x-request-id %q) = %+v; want a fresh id set", bad, got)
		}
	}
	a, b := NewRequestID(), NewRequestID()
	if a == b || len(a) != 36 || a[14] != '4' {
		t.Errorf("NewRequestID() = %q, %q; want distinct v4 UUIDs", a, b)
	}
}

func TestResponse(t *testing.T) {
	p := policy()
	wantSet := []Header{
		{"strict-transport-security", "max-age=31536000; includeSubDomains"}, {"x-content-type-options", "nosniff"},
		{"cross-origin-resource-policy", "same-origin"},
	}
	if diff := cmp.Diff(wantSet, p.SecurityHeaders()); diff != "" {
		t.Errorf("SecurityHeaders mismatch (-want +got):\n%s", diff)
	}
	// Envoy refuses ext_proc's removal of its own headers (counted in
	// ext_proc.rejected_header_mutations): the route removes that one.
	for name, want := range map[string]bool{"server": true, "x-powered-by": true, "x-backend": true, "content-type": false, "x-request-id": false, "x-envoy-upstream-service-time": false} {
		if got := p.Strips(name); got != want {
			t.Errorf("Strips(%q) = %v; want %v", name, got, want)
		}
	}
}

func TestValidTraceparent(t *testing.T) {
	for s, want := range map[string]bool{
		tp: true,
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00":       true,
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra": true,
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01":       true,
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-":      false,
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x":      false,
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01":       false,
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01":       false,
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01":       false,
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01":       false,
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7":          false,
		"0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01":       false,
		"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01":       false,
		"": false,
	} {
		if got := ValidTraceparent(s); got != want {
			t.Errorf("ValidTraceparent(%q) = %v; want %v", s, got, want)
		}
	}
	for range 100 {
		if s := NewTraceparent(); !ValidTraceparent(s) {
			t.Fatalf("NewTraceparent() = %q, which is not valid", s)
		}
	}
}

func FuzzRequest(f *testing.F) {
	f.Add("x-request-id", "abc", tp)
	f.Add("x-gatehouse-tier", "gold", "00-zz")
	f.Fuzz(func(t *testing.T, name, value, traceparent string) {
		res := policy().Request([]Header{{name, value}, {"traceparent", traceparent}}, NewTraceparent)
		if !ValidRequestID(res.RequestID) || !ValidTraceparent(res.Traceparent) {
			t.Fatalf("Request left invalid ids: %+v", res)
		}
		if policy().IsInternal(name) && len(res.Remove) == 0 {
			t.Fatalf("Request kept internal header %q", name)
		}
	})
}

func BenchmarkRequest(b *testing.B) {
	p := policy()
	hs := []Header{{":authority", "api.example.com"}, {":path", "/v1/orders"}, {":method", "GET"}, {":scheme", "https"},
		{"user-agent", "curl/8"}, {"accept", "*/*"}, {"x-request-id", "6f1c2d3e-4b5a-4c6d-8e7f-000000000001"}, {"x-gatehouse-tier", "gold"}}
	b.ReportAllocs()
	for b.Loop() {
		p.Request(hs, NewTraceparent)
	}
}
