package config

import (
	"strings"
	"testing"
)

// TestExtProcGRPCValidation: a processor setting a proxyless gRPC
// client's ext_proc filter cannot apply is an error at its field, not a
// silent drop; hygiene alone is fine.
func TestExtProcGRPCValidation(t *testing.T) {
	const base = `apiVersion: gatehouse/v1
extproc:
  hygiene:
    stripResponseHeaders: [grpc-status-details]
    securityHeaders: {extra: {grpc-x: "1"}}
xds:
  services: {extproc: [a:9192, b:9192]}
listeners:
  - {name: web, address: 127.0.0.1:8080}
  - {name: echo.test, kind: grpc}
clusters:
  - {name: echo, endpoints: [{address: 10.0.0.1:50051}]}
routes:
`
	tests := []struct {
		name   string
		routes string
		want   []string
		ok     bool
	}{
		{
			name: "every processor but hygiene",
			routes: `  - id: rpc
    listeners: [echo.test]
    cluster: echo
    extproc:
      hygiene: {internalHeaders: [grpc-foo, x-ok]}
      openapi: {spec: "openapi: 3.0.3"}
      redact: {}
      idempotency: {}
      maxBodySize: 1KiB
      onLargeBody: skip
`,
			want: []string{
				"routes[0].extproc.openapi: cannot apply to proxyless gRPC clients",
				"routes[0].extproc.redact: cannot apply to proxyless gRPC clients",
				"routes[0].extproc.idempotency: cannot apply to proxyless gRPC clients",
				"routes[0].extproc.maxBodySize: cannot apply to proxyless gRPC clients",
				"routes[0].extproc.onLargeBody: cannot apply to proxyless gRPC clients",
				`routes[0].extproc.hygiene.internalHeaders[0]: "grpc-foo" is in gRPC's reserved grpc-* space`,
				`extproc.hygiene.stripResponseHeaders[0]: "grpc-status-details" is in gRPC's reserved grpc-* space, and route "rpc"`,
				`extproc.hygiene.securityHeaders.extra.grpc-x: "grpc-x" is in gRPC's reserved grpc-* space`,
				`xds.services.extproc: lists 2 addresses, but proxyless gRPC clients (route "rpc") dial one target`,
			},
		},
		{
			name: "a route served to both kinds of client",
			routes: `  - {id: both, listeners: [web, echo.test], cluster: echo, extproc: {openapi: {spec: "openapi: 3.0.3"}}}
`,
			want: []string{"routes[0].extproc.openapi: cannot apply to proxyless gRPC clients (a grpc listener serves this route)"},
		},
		{
			name:   "http routes keep every processor",
			routes: "  - {id: web, listeners: [web], cluster: echo, extproc: {idempotency: {}, redact: {}}}\n",
			ok:     true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadBytes("g.yaml", []byte(base+tt.routes), LoadOptions{})
			if tt.ok {
				if err != nil && strings.Contains(err.Error(), "gRPC") {
					t.Fatalf("LoadBytes = %v; want no gRPC error", err)
				}
				return
			}
			if err == nil {
				t.Fatal("LoadBytes = nil; want errors")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("errors lack %q:\n%v", w, err)
				}
			}
			if n := strings.Count(err.Error(), "lists 2 addresses"); n > 1 {
				t.Errorf("the component's error is reported %d times; want once", n)
			}
		})
	}
}

// TestExtProcGRPCCertificateProviders: with server.tls, gatehouse's
// ext_proc admits only clients with a certificate: a route served to
// gRPC clients needs the certificate provider instances their bootstrap
// has, both named.
func TestExtProcGRPCCertificateProviders(t *testing.T) {
	const yaml = `apiVersion: gatehouse/v1
server:
  tls: {certFile: /c.pem, keyFile: /k.pem, clientCAFile: /ca.pem, allow: ["*"]}
extproc: {}
xds:
  services:
    tls:
      sni: gatehouse.example.org
      certificate: {name: envoy, path: /etc/envoy/sds-certificate.yaml}
      validation: {name: roots, path: /etc/envoy/sds-validation.yaml}
%s
listeners:
  - {name: echo.test, kind: grpc}
clusters:
  - {name: echo, endpoints: [{address: 10.0.0.1:50051}]}
routes:
  - {id: rpc, listeners: [echo.test], cluster: echo, extproc: {hygiene: {}}}
`
	for _, tt := range []struct {
		providers string
		want      []string
	}{
		{"", []string{"routes[0].extproc: proxyless gRPC clients (a grpc listener serves this route) must speak mTLS to ext_proc (server.tls is set): set xds.services.tls.grpcCertificateProviders"}},
		{"      grpcCertificateProviders: {identity: client}", []string{"xds.services.tls.grpcCertificateProviders.roots: is required"}},
		{"      grpcCertificateProviders: {identity: client, roots: roots}", nil},
	} {
		_, err := LoadBytes("g.yaml", []byte(strings.Replace(yaml, "%s", tt.providers, 1)), LoadOptions{SkipSecrets: true})
		for _, w := range tt.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("with %q: LoadBytes = %v; want %q", tt.providers, err, w)
			}
		}
		if tt.want == nil && err != nil && strings.Contains(err.Error(), "gRPC") {
			t.Errorf("with %q: LoadBytes = %v; want no gRPC error", tt.providers, err)
		}
	}
}
