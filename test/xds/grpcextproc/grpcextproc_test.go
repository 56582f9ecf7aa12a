// Package grpcextproc_test drives gatehouse's ext_proc through gRPC-Go's
// own proxyless xDS client and its client-side ext_proc filter (gRFC A93):
// the client gets its listener, route and the ext_proc filter from
// `gatehouse serve`'s xDS server (the binary built from this tree; the
// mTLS variant runs serve's runtime in process), calls its ext_proc
// server around each RPC, and applies the header mutations it is answered
// with.
//
// gRPC-Go registers that filter at init, and only when
// GRPC_EXPERIMENTAL_XDS_EXT_PROC_ON_CLIENT=true: TestMain runs the tests
// once without the flag (the client NACKs the listener) and then again in
// a child process of this test binary with it.
package grpcextproc_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/xds"

	"github.com/gatehouse/gatehouse/cmd/gatehouse/app"
	"github.com/gatehouse/gatehouse/internal/contract"
	"github.com/gatehouse/gatehouse/internal/testenv"
	"github.com/gatehouse/gatehouse/test/harness"
)

const extProcFlag = "GRPC_EXPERIMENTAL_XDS_EXT_PROC_ON_CLIENT"

// withFlag is whether this process runs with the client ext_proc filter.
var withFlag = os.Getenv(extProcFlag) == "true"

func TestMain(m *testing.M) {
	code := 0
	goleak.VerifyTestMain(exitCode{m, &code},
		// gRPC's xDS client keeps process-wide pools that outlive a
		// channel by design; they hold no connection once closed.
		goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
		goleak.IgnoreTopFunction("google.golang.org/grpc/internal/xds/clients/internal/buffer.(*Unbounded).Load"),
		// The file_watcher certificate providers of the TLS test belong to
		// that pool too: the xDS channel's credentials and the ext_proc
		// credentials of the resources it keeps cached.
		goleak.IgnoreTopFunction("google.golang.org/grpc/credentials/tls/certprovider/pemfile.(*watcher).run"),
	)
}

// exitCode runs the tests, then, without the flag and if they passed,
// the same tests in a child process with it; it exits with the worse code.
type exitCode struct {
	m    *testing.M
	code *int
}

func (e exitCode) Run() int {
	code := e.m.Run()
	if withFlag || code != 0 {
		return code
	}
	cmd := exec.Command(os.Args[0], os.Args[1:]...)
	cmd.Env = append(os.Environ(), extProcFlag+"=true")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "with %s=true: %v\n", extProcFlag, err)
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() > 0 {
			return ee.ExitCode()
		}
		return 1
	}
	return 0
}

// backend answers UnaryCall and EmptyCall with a response header and
// records the metadata each call arrived with.
type backend struct {
	testgrpc.UnimplementedTestServiceServer
	mu   sync.Mutex
	seen map[string]metadata.MD
}

func (b *backend) record(ctx context.Context, method string) {
	md, _ := metadata.FromIncomingContext(ctx)
	b.mu.Lock()
	b.seen[method] = md
	b.mu.Unlock()
	_ = grpc.SetHeader(ctx, metadata.Pairs("x-backend", "b1"))
}

func (b *backend) UnaryCall(ctx context.Context, _ *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	b.record(ctx, "UnaryCall")
	return &testpb.SimpleResponse{ServerId: "b1"}, nil
}

func (b *backend) EmptyCall(ctx context.Context, _ *testpb.Empty) (*testpb.Empty, error) {
	b.record(ctx, "EmptyCall")
	return &testpb.Empty{}, nil
}

func (b *backend) StreamingOutputCall(_ *testpb.StreamingOutputCallRequest, stream testgrpc.TestService_StreamingOutputCallServer) error {
	b.record(stream.Context(), "StreamingOutputCall")
	return stream.Send(&testpb.StreamingOutputCallResponse{})
}

func (b *backend) md(method string) metadata.MD {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.seen[method]
}

// The grpc listener's routes: EmptyCall runs no processor, everything
// else runs hygiene. The server section is filled in (plaintext, or mTLS).
const configTmpl = `apiVersion: gatehouse/v1
server:
  admin: {address: %q}
  log: {level: warn}
%s
extproc:
  address: %q
xds:
  address: %q
%s
listeners:
  - {name: echo.test, kind: grpc}
clusters:
  - name: echo
    endpoints: [{address: %s}]
routes:
  - id: empty
    listeners: [echo.test]
    match: {path: /grpc.testing.TestService/EmptyCall}
    cluster: echo
  - id: rpc
    listeners: [echo.test]
    match: {prefix: /grpc.testing.TestService/}
    cluster: echo
    extproc:
      hygiene: {}
`

// gatehouse is a running gatehouse: its xDS address and its counters.
type gatehouse interface {
	xds() string
	// counter sums a counter's series whose labels include the given
	// name/value pairs.
	counter(t *testing.T, name string, labels ...string) float64
}

// config is the test's gatehouse config, with its xDS and admin
// addresses. server and services are further server: and xds: settings.
func config(t *testing.T, b *backend, server, services string) (yaml, xdsAddr, admin string) {
	t.Helper()
	backend := testenv.ServeGRPC(t, func(s *grpc.Server) { testgrpc.RegisterTestServiceServer(s, b) })
	xdsAddr, admin = testenv.FreeAddr(t), testenv.FreeAddr(t)
	return fmt.Sprintf(configTmpl, admin, server, testenv.FreeAddr(t), xdsAddr, services, backend), xdsAddr, admin
}

// process is `gatehouse serve`, the binary built from this tree.
type process struct {
	g       *harness.Gatehouse
	xdsAddr string
}

func (p process) xds() string { return p.xdsAddr }

func (p process) counter(_ *testing.T, name string, labels ...string) float64 {
	var sel []string
	for i := 0; i+1 < len(labels); i += 2 {
		sel = append(sel, fmt.Sprintf("%s=%q", labels[i], labels[i+1]))
	}
	return max(0, p.g.Metric(name, sel...))
}

// serveProcess runs `gatehouse serve` on the test's config.
func serveProcess(t *testing.T, b *backend) gatehouse {
	t.Helper()
	yaml, xdsAddr, admin := config(t, b, "", "")
	return process{g: harness.StartGatehouse(t, yaml, admin), xdsAddr: xdsAddr}
}

// inProcess is serve's runtime in this process (app.Start), for what the
// harness's process cannot reach (the admin pages over mTLS).
type inProcess struct{ rt *app.Runtime }

func (p inProcess) xds() string { return p.rt.Addr("xds") }

func (p inProcess) counter(t *testing.T, name string, labels ...string) float64 {
	return counter(t, p.rt.Registry(), name, labels...)
}

// serve starts gatehouse's xds and extproc components in this process
// (the code of gatehouse serve).
func serve(t *testing.T, ctx context.Context, b *backend, server, services string) gatehouse {
	t.Helper()
	cfgPath := filepath.Join(t.TempDir(), "gatehouse.yaml")
	yaml, _, _ := config(t, b, server, services)
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	rt, err := app.Start(ctx, app.Options{ConfigPath: cfgPath, Components: []string{"xds", "extproc"}, Stdout: io.Discard, Stderr: io.Discard})
	if err != nil {
		t.Fatalf("app.Start() = %v", err)
	}
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = rt.Run(runCtx)
	}()
	t.Cleanup(func() {
		stop()
		wg.Wait()
	})
	return inProcess{rt}
}

// dial is a proxyless client of xds:///echo.test whose bootstrap trusts
// gatehouse's xDS server (gRFC A102: only then does the client build the
// ext_proc channel credentials gatehouse pushes). creds is its xDS
// channel credentials; extra further bootstrap fields.
func dial(t *testing.T, g gatehouse, creds, extra string) testgrpc.TestServiceClient {
	t.Helper()
	bootstrap := fmt.Sprintf(`{
  "xds_servers": [{"server_uri": %q, "channel_creds": [%s], "server_features": ["xds_v3", "trusted_xds_server"]}],
  "node": {"id": "proxyless-extproc", "cluster": "proxyless"}%s
}`, g.xds(), creds, extra)
	resolver, err := xds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		t.Fatalf("xds resolver: %v", err)
	}
	conn, err := grpc.NewClient("xds:///echo.test", grpc.WithResolvers(resolver), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return testgrpc.NewTestServiceClient(conn)
}

// counter sums a gatehouse counter's series whose labels include labels.
func counter(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					found = found || lp.GetName() == labels[i] && lp.GetValue() == labels[i+1]
				}
				if !found {
					continue next
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

// TestGRPCClientExtProc: with the flag, gRPC-Go's client runs the ext_proc
// of `gatehouse serve` (the binary) around the RPCs of routes with
// processors: the backend sees the request hygiene made (spoofed identity
// removed, request id and traceparent set), the client the response
// headers hygiene set; the route without processors opens no stream.
func TestGRPCClientExtProc(t *testing.T) {
	if !withFlag {
		t.Skip("runs in the child process with " + extProcFlag + "=true")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	b := &backend{seen: map[string]metadata.MD{}}
	g := serveProcess(t, b)
	client := dial(t, g, insecureCreds, "")
	checkExtProc(t, ctx, g, b, client)

	// gatehouse gone (xDS and ext_proc): the client keeps its config; the
	// route with processors fails closed (extprocFailureMode), the route
	// without goes on.
	g.(process).g.Kill()
	var err error
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		_, err = client.UnaryCall(cctx, &testpb.SimpleRequest{})
		ccancel()
		if err != nil {
			break
		}
	}
	if status.Code(err) != codes.Internal || !strings.Contains(err.Error(), "extproc") {
		t.Errorf("UnaryCall() with ext_proc gone = %v; want INTERNAL from the client's ext_proc filter (fail closed)", err)
	}
	cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
	defer ccancel()
	if _, err := client.EmptyCall(cctx, &testpb.Empty{}); err != nil {
		t.Errorf("EmptyCall() with gatehouse gone = %v; want the route without processors served from the client's config", err)
	}
}

const insecureCreds = `{"type": "insecure"}`

// TestGRPCClientExtProcTLS: with server.tls (gatehouse's servers admit
// only clients with a certificate), the client reaches ext_proc over mTLS
// with the certificate provider instances of its own bootstrap that
// xds.services.tls.grpcCertificateProviders names; the certificates are
// made in the test.
func TestGRPCClientExtProcTLS(t *testing.T) {
	if !withFlag {
		t.Skip("runs in the child process with " + extProcFlag + "=true")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	ca := testenv.NewRootCA(t, "mesh.test")
	ca.Issue(t, testenv.Issue{URIs: []string{"spiffe://mesh.test/gatehouse"}, Server: true}).Write(t, filepath.Join(dir, "gatehouse"), ca)
	ca.Issue(t, testenv.Issue{URIs: []string{"spiffe://mesh.test/grpc/echo-client"}}).Write(t, filepath.Join(dir, "client"), ca)
	f := func(who, name string) string { return filepath.Join(dir, who, name) }
	server := fmt.Sprintf("  tls: {certFile: %q, keyFile: %q, clientCAFile: %q, allow: [\"spiffe://mesh.test/grpc/*\"]}",
		f("gatehouse", "tls.crt"), f("gatehouse", "tls.key"), f("gatehouse", "ca.crt"))
	// Envoy's SDS secrets are required with server.tls; no Envoy reads
	// them here.
	services := `  services:
    tls:
      sni: localhost
      certificate: {name: envoy, path: /unused/sds-certificate.yaml}
      validation: {name: roots, path: /unused/sds-validation.yaml}
      grpcCertificateProviders: {identity: mesh, roots: mesh}`
	b := &backend{seen: map[string]metadata.MD{}}
	g := serve(t, ctx, b, server, services)
	creds := fmt.Sprintf(`{"type": "tls", "config": {"ca_certificate_file": %q, "certificate_file": %q, "private_key_file": %q}}`,
		f("client", "ca.crt"), f("client", "tls.crt"), f("client", "tls.key"))
	providers := fmt.Sprintf(`,
  "certificate_providers": {"mesh": {"plugin_name": "file_watcher", "config": {"certificate_file": %q, "private_key_file": %q, "ca_certificate_file": %q, "refresh_interval": "600s"}}}`,
		f("client", "tls.crt"), f("client", "tls.key"), f("client", "ca.crt"))
	checkExtProc(t, ctx, g, b, dial(t, g, creds, providers))
}

// checkExtProc makes the calls of TestGRPCClientExtProc and checks what
// the backend, the client and gatehouse saw.
func checkExtProc(t *testing.T, ctx context.Context, g gatehouse, b *backend, client testgrpc.TestServiceClient) {
	t.Helper()
	cctx := metadata.AppendToOutgoingContext(ctx, contract.HeaderSubject, "spoofed", contract.HeaderTier, "enterprise", "traceparent", "garbage")
	resp, err := client.UnaryCall(cctx, &testpb.SimpleRequest{}, grpc.WaitForReady(true))
	if err != nil || resp.GetServerId() != "b1" {
		t.Fatalf("UnaryCall() = %v, %v; want b1's answer", resp, err)
	}
	// The response side, on a stream: gRPC-Go applies the response
	// mutations to ClientStream.Header() (a unary call's grpc.Header
	// option reads the headers as they came from the backend).
	stream, err := client.StreamingOutputCall(cctx, &testpb.StreamingOutputCallRequest{}, grpc.WaitForReady(true))
	if err != nil {
		t.Fatalf("StreamingOutputCall() = %v", err)
	}
	header, err := stream.Header()
	if err != nil {
		t.Fatalf("Header() = %v", err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("Recv() = %v", err)
	}
	if _, err := stream.Recv(); err != io.EOF {
		t.Fatalf("Recv() = %v; want io.EOF", err)
	}

	for method, md := range map[string]metadata.MD{"UnaryCall": b.md("UnaryCall"), "StreamingOutputCall": b.md("StreamingOutputCall")} {
		checkRequest(t, method, md)
	}
	id := b.md("StreamingOutputCall").Get("x-request-id")
	// The response side reached the client: hygiene's security header and
	// the request id echoed, the backend's own header kept.
	if got := header.Get("x-content-type-options"); len(got) != 1 || got[0] != "nosniff" {
		t.Errorf("client saw x-content-type-options %v; want nosniff", got)
	}
	if got := header.Get("x-request-id"); len(got) != 1 || len(id) == 1 && got[0] != id[0] {
		t.Errorf("client saw x-request-id %v; want the one the backend saw, %v", got, id)
	}
	if got := header.Get("x-backend"); len(got) != 1 {
		t.Errorf("client saw x-backend %v; want the backend's header kept", got)
	}
	if n := g.counter(t, "gatehouse_extproc_route_lookups_total", "source", "stream_metadata"); n != 2 {
		t.Errorf("streams resolved by the route id in their metadata = %v; want 2", n)
	}
	// A stream is counted when it ends, which the client's filter does
	// after the RPC returned.
	for deadline := time.Now().Add(10 * time.Second); g.counter(t, "gatehouse_extproc_streams_total", "route", "rpc", "result", "continued") < 2; {
		if time.Now().After(deadline) {
			t.Fatalf("streams of route rpc that continued = %v; want 2", g.counter(t, "gatehouse_extproc_streams_total", "route", "rpc", "result", "continued"))
		}
		time.Sleep(20 * time.Millisecond)
	}

	// A route without processors: no ext_proc stream.
	before := g.counter(t, "gatehouse_extproc_streams_total")
	if _, err := client.EmptyCall(cctx, &testpb.Empty{}, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("EmptyCall() = %v", err)
	}
	if n := g.counter(t, "gatehouse_extproc_streams_total") - before; n != 0 {
		t.Errorf("EmptyCall (route without processors) opened %v ext_proc streams; want 0", n)
	}
	if v := b.md("EmptyCall").Get(contract.HeaderSubject); len(v) != 1 {
		t.Errorf("EmptyCall: backend saw %s %v; want the header untouched (no processor on the route)", contract.HeaderSubject, v)
	}
	if n := g.counter(t, "gatehouse_extproc_protocol_errors_total"); n != 0 {
		t.Errorf("protocol errors = %v; want 0", n)
	}
}

// checkRequest checks what the backend saw of a call hygiene processed:
// the client's identity headers stripped, a request id and a traceparent
// in place of garbage.
func checkRequest(t *testing.T, method string, md metadata.MD) {
	t.Helper()
	if md == nil {
		t.Errorf("%s: the backend was not called", method)
		return
	}
	for _, h := range []string{contract.HeaderSubject, contract.HeaderTier} {
		if v := md.Get(h); len(v) != 0 {
			t.Errorf("%s: backend saw %s: %v; want the client's copy stripped", method, h, v)
		}
	}
	if id := md.Get("x-request-id"); len(id) != 1 || len(id[0]) != 36 {
		t.Errorf("%s: backend saw x-request-id %v; want one generated UUID", method, id)
	}
	if tp := md.Get("traceparent"); len(tp) != 1 || !strings.HasPrefix(tp[0], "00-") || len(tp[0]) != 55 {
		t.Errorf("%s: backend saw traceparent %v; want a W3C traceparent in place of garbage", method, tp)
	}
}

// TestGRPCClientWithoutFlag: a client without the flag cannot run the
// ext_proc filter, which is not optional: it NACKs the listener (counted
// by gatehouse) rather than call the route without its processors.
func TestGRPCClientWithoutFlag(t *testing.T) {
	if withFlag {
		t.Skip("runs without " + extProcFlag)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b := &backend{seen: map[string]metadata.MD{}}
	g := serve(t, ctx, b, "", "")
	client := dial(t, g, insecureCreds, "")

	cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
	defer ccancel()
	if _, err := client.UnaryCall(cctx, &testpb.SimpleRequest{}); err == nil {
		t.Fatal("UnaryCall() succeeded; want it to fail: the client cannot run the route's processors")
	}
	if md := b.md("UnaryCall"); md != nil {
		t.Errorf("the backend was called (%v) without the route's processors", md)
	}
	deadline := time.Now().Add(10 * time.Second)
	for g.counter(t, "gatehouse_xds_nacks_total") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("gatehouse counted no NACK; want the client's NACK of the listener")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
