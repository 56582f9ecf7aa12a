package app

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

// TestDrainDelay: during server.drainDelay /readyz is 503 and gRPC health
// NOT_SERVING, while the listeners still accept and answer RPCs; then the
// drain runs and Run returns nil.
func TestDrainDelay(t *testing.T) {
	path := writeConfig(t, t.TempDir(), strings.Replace(testConfig, "drainDelay: 0s", "drainDelay: 3s", 1))
	r := start(t, Options{ConfigPath: path})
	admin := "http://" + r.rt.AdminAddr()
	authz := r.rt.Addr(config.ComponentAuthz)
	r.cancel()
	eventually(t, "/readyz to say 503", func() bool {
		resp, err := http.Get(admin + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	// A new connection, made during the delay, is served.
	cc := testenv.Dial(t, authz)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	h, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: config.ComponentAuthz})
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health during the drain delay = %v, %v; want NOT_SERVING", h, err)
	}
	if _, err := authv3.NewAuthorizationClient(cc).Check(ctx, &authv3.CheckRequest{}); err != nil {
		t.Fatalf("Check during the drain delay = %v; want answered", err)
	}
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatalf("Run() = %v; want nil", err)
		}
		r.done <- nil
	case <-time.After(20 * time.Second):
		t.Fatal("Run() did not return after the drain")
	}
}

// TestDrainCutsExitStatus: an ext_proc stream that outlives
// server.shutdownTimeout is cut, and Run says so with exit status 3.
func TestDrainCutsExitStatus(t *testing.T) {
	path := writeConfig(t, t.TempDir(), strings.Replace(testConfig, "shutdownTimeout: 2s", "shutdownTimeout: 300ms", 1))
	r := start(t, Options{ConfigPath: path})
	cc := testenv.Dial(t, r.rt.Addr(config.ComponentExtProc))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := extprocv3.NewExternalProcessorClient(cc).Process(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The stream is open on the server once its first message is in.
	if err := stream.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{}}}); err != nil {
		t.Fatal(err)
	}
	_, _ = stream.Recv()
	r.cancel()
	select {
	case err := <-r.done:
		var exit *ExitError
		if !errors.As(err, &exit) || exit.Code != ExitRPCsCut {
			t.Fatalf("Run() = %v; want exit status %d", err, ExitRPCsCut)
		}
		r.done <- nil
	case <-time.After(20 * time.Second):
		t.Fatal("Run() did not return after the drain")
	}
	if !strings.Contains(r.logs.String(), "rpcs_cut") {
		t.Errorf("the cut was not logged:\n%s", r.logs.String())
	}
}
