// Package xds_test drives gatehouse's control plane end to end with an
// independent xDS client: gRPC-Go's own proxyless xDS implementation.
package xds_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/xds"

	"github.com/gatehouse/gatehouse/cmd/gatehouse/app"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// gRPC's xDS client keeps process-wide pools that outlive a
		// channel by design; they hold no connection once closed.
		goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
		goleak.IgnoreTopFunction("google.golang.org/grpc/internal/xds/clients/internal/buffer.(*Unbounded).Load"),
	)
}

// backend is a test gRPC server that answers UnaryCall with its name, or
// fails every call while failing is set.
type backend struct {
	testgrpc.UnimplementedTestServiceServer
	name    string
	addr    string
	failing atomic.Bool
	calls   atomic.Int64
}

func (b *backend) UnaryCall(context.Context, *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	b.calls.Add(1)
	if b.failing.Load() {
		return nil, status.Error(codes.Unavailable, b.name+" is failing")
	}
	return &testpb.SimpleResponse{ServerId: b.name}, nil
}

func startBackend(t *testing.T, name string) *backend {
	t.Helper()
	b := &backend{name: name}
	b.addr = testenv.ServeGRPC(t, func(s *grpc.Server) { testgrpc.RegisterTestServiceServer(s, b) })
	return b
}

const configTmpl = `apiVersion: gatehouse/v1
server:
  admin: {address: "127.0.0.1:0"}
  log: {level: warn}
xds:
  address: "127.0.0.1:0"
listeners:
  - {name: echo.test, kind: grpc}
clusters:
  - name: echo
    endpoints: [{address: %s}, {address: %s}, {address: %s}]
    outlierDetection:
      interval: 1s
      baseEjectionTime: 300s
      maxEjectionTime: 300s
      maxEjectionPercent: 50
      failurePercentage: {threshold: 50, minimumHosts: 3, requestVolume: 10}
  - name: echo-v2
    endpoints: [{address: %s}]
routes:
  - id: echo
    listeners: [echo.test]
    match: {prefix: /}
    cluster: %s
    timeout: 5s
`

// TestProxylessGRPC: gRPC-Go's xDS client resolves listener → route →
// cluster → endpoints from gatehouse, spreads calls over the endpoints,
// follows a route change made by editing the config file and reloading,
// and stops calling a failing backend once failure-percentage outlier
// detection ejects it.
func TestProxylessGRPC(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	b := []*backend{startBackend(t, "b0"), startBackend(t, "b1"), startBackend(t, "b2"), startBackend(t, "v2")}

	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "gatehouse.yaml")
	write := func(cluster string) {
		t.Helper()
		body := fmt.Sprintf(configTmpl, b[0].addr, b[1].addr, b[2].addr, b[3].addr, cluster)
		if err := os.WriteFile(cfgPath, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("echo")

	rt, err := app.Start(ctx, app.Options{ConfigPath: cfgPath, Components: []string{"xds"}, Stdout: io.Discard, Stderr: io.Discard})
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
	defer func() {
		stop()
		wg.Wait()
	}()

	bootstrap := fmt.Sprintf(`{
  "xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
  "node": {"id": "proxyless-1", "cluster": "proxyless"}
}`, rt.Addr("xds"))
	resolver, err := xds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		t.Fatalf("xds resolver: %v", err)
	}
	conn, err := grpc.NewClient("xds:///echo.test", grpc.WithResolvers(resolver), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := testgrpc.NewTestServiceClient(conn)

	call := func() (string, error) {
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		defer ccancel()
		resp, err := client.UnaryCall(cctx, &testpb.SimpleRequest{}, grpc.WaitForReady(true))
		return resp.GetServerId(), err
	}

	// 1. Resolution and spreading: round robin reaches all three.
	seen := map[string]int{}
	for range 30 {
		id, err := call()
		if err != nil {
			t.Fatalf("UnaryCall() = %v", err)
		}
		seen[id]++
	}
	for _, name := range []string{"b0", "b1", "b2"} {
		if seen[name] == 0 {
			t.Errorf("calls per backend = %v; want every one of b0, b1, b2 reached", seen)
		}
	}
	if seen["v2"] != 0 {
		t.Errorf("calls per backend = %v; v2 is not routed yet", seen)
	}

	// 2. Outlier detection: b1 fails; after at least one interval with
	// enough volume it is ejected, and calls stop reaching it.
	b[1].failing.Store(true)
	ejected := false
	deadline := time.Now().Add(30 * time.Second)
	for !ejected && time.Now().Before(deadline) {
		// A round of calls, then check whether b1 got any of the last 30.
		for range 30 {
			_, _ = call()
		}
		before := b[1].calls.Load()
		for range 30 {
			_, _ = call()
		}
		ejected = b[1].calls.Load() == before
		if !ejected {
			time.Sleep(200 * time.Millisecond)
		}
	}
	if !ejected {
		t.Fatal("b1 kept receiving calls for 30s while failing every one; want it ejected by failure-percentage outlier detection")
	}
	for range 30 {
		if id, err := call(); err != nil || id == "b1" {
			t.Fatalf("UnaryCall() = %q, %v after the ejection; want b0 or b2", id, err)
		}
	}

	// 3. Route change by editing the config file and reloading: calls
	// move to echo-v2.
	write("echo-v2")
	if res, err := rt.Reload("test edit"); err != nil || res != app.ReloadApplied {
		t.Fatalf("Reload() = %v, %v; want applied", res, err)
	}
	moved := false
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		id, err := call()
		if err == nil && id == "v2" {
			moved = true
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !moved {
		t.Fatal("calls never reached v2 after the route was changed to cluster echo-v2")
	}
	for range 10 {
		if id, err := call(); err != nil || id != "v2" {
			t.Fatalf("UnaryCall() = %q, %v; want every call on v2 after the change", id, err)
		}
	}

	// 4. An invalid edit is rejected with file:line and changes nothing.
	if err := os.WriteFile(cfgPath, []byte(strings.Replace(fmt.Sprintf(configTmpl, b[0].addr, b[1].addr, b[2].addr, b[3].addr, "echo-v2"), "cluster: echo-v2", "cluster: echo-v3", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := rt.Reload("bad edit")
	if res != app.ReloadRejected || err == nil || !strings.Contains(err.Error(), "gatehouse.yaml:") || !strings.Contains(err.Error(), `no cluster is named "echo-v3"`) {
		t.Fatalf("Reload(bad) = %v, %v; want rejected naming file:line and the missing cluster", res, err)
	}
	if id, err := call(); err != nil || id != "v2" {
		t.Fatalf("UnaryCall() = %q, %v after a rejected reload; want v2 still", id, err)
	}
}
