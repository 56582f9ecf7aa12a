package process

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// floodBoundMiB is the documented bound (docs/operations.md, "Bounded
// resources") on the peak RSS of gatehouse through every flood below, with
// the default limits: 4 servers × 64 MiB in-flight budget, the waiting
// streams' 64 KiB windows, and the Go heap's headroom around them.
const floodBoundMiB = 512

const floodConfig = `apiVersion: gatehouse/v1
server:
  admin: {address: "127.0.0.1:0"}
  shutdownTimeout: 5s
authz:
  address: 127.0.0.1:0
  webhooks:
    - {name: gh, scheme: github, secrets: ["file:%s"]}
extproc: {address: 127.0.0.1:0}
ratelimit: {address: 127.0.0.1:0}
xds: {address: 127.0.0.1:0}
routes:
  - {id: one, match: {prefix: /}, authz: {public: true}}
`

// TestFlood reproduces issue 17's "one connection, 256 concurrent 4 MB
// requests" against each server of a real gatehouse process, then 256
// requests each just under ext_authz's own receive limit, and holds the
// process's peak RSS (VmHWM) to floodBoundMiB. Every flood is answered:
// nothing hangs, the process keeps serving.
func TestFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("a memory flood; not in -short")
	}
	dir := t.TempDir()
	secret := filepath.Join(dir, "gh.secret")
	if err := os.WriteFile(secret, []byte("flood-test-secret-0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "gatehouse.yaml")
	if err := os.WriteFile(path, []byte(fmt.Sprintf(floodConfig, secret)), 0o644); err != nil {
		t.Fatal(err)
	}
	// Each flood gets a process of its own, so that its peak RSS is its
	// own.
	start := func(t *testing.T, component string) (*proc, string) {
		p := serve(t, path)
		l := p.waitLog(t, component+" serving", func(m map[string]any) bool { return m["msg"] == "serving" && m["component"] == component })
		p.waitLog(t, "started", msgIs("gatehouse started"))
		return p, l["address"].(string)
	}
	check := func(t *testing.T, p *proc) {
		peak := peakRSS(t, p)
		if peak > floodBoundMiB<<20 {
			t.Errorf("peak RSS %d MiB; want at most %d MiB", peak>>20, floodBoundMiB)
		}
		p.stop(t)
	}

	const n, size = 256, 4_000_000
	big := make([]byte, size)
	for i := range big {
		big[i] = 'a'
	}
	floods := []struct {
		name string
		call func(ctx context.Context, cc *grpc.ClientConn) error
	}{
		{"authz", func(ctx context.Context, cc *grpc.ClientConn) error {
			_, err := authv3.NewAuthorizationClient(cc).Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
				Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{RawBody: big}},
			}})
			return err
		}},
		{"ratelimit", func(ctx context.Context, cc *grpc.ClientConn) error {
			_, err := rlsv3.NewRateLimitServiceClient(cc).ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: string(big)})
			return err
		}},
		{"extproc", func(ctx context.Context, cc *grpc.ClientConn) error {
			s, err := extprocv3.NewExternalProcessorClient(cc).Process(ctx)
			if err != nil {
				return err
			}
			if err := s.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{Body: big}}}); err != nil {
				_, err = s.Recv()
				return err
			}
			_, err = s.Recv()
			return err
		}},
		{"xds", func(ctx context.Context, cc *grpc.ClientConn) error {
			s, err := discoveryv3.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
			if err != nil {
				return err
			}
			if err := s.Send(&discoveryv3.DiscoveryRequest{TypeUrl: string(big)}); err != nil {
				_, err = s.Recv()
				return err
			}
			_, err = s.Recv()
			return err
		}},
	}
	for _, f := range floods {
		t.Run(f.name, func(t *testing.T) {
			p, addr := start(t, f.name)
			codes := flood(t, addr, n, f.call)
			t.Logf("%s: %d × %d bytes on one connection: %v; peak RSS %d MiB", f.name, n, size, codes, peakRSS(t, p)>>20)
			if codes[codesOK] > 0 {
				t.Errorf("%d of the 4 MB requests were accepted", codes[codesOK])
			}
			check(t, p)
		})
	}

	// Requests that fit ext_authz's limit (headers twice over, 64 KiB and
	// the webhook's 1 MiB body), each with a deadline: they queue for the
	// in-flight budget instead of being read all at once.
	t.Run("authz/under-the-limit", func(t *testing.T) {
		p, addr := start(t, "authz")
		body := big[:1<<20]
		got := flood(t, addr, n, func(ctx context.Context, cc *grpc.ClientConn) error {
			_, err := authv3.NewAuthorizationClient(cc).Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
				Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{RawBody: body, Path: "/"}},
			}})
			return err
		})
		t.Logf("authz: %d × %d bytes on one connection: %v; peak RSS %d MiB", n, len(body), got, peakRSS(t, p)>>20)
		if got[codesOK] == 0 {
			t.Errorf("no request under the limit was answered: %v", got)
		}
		check(t, p)
	})
}

const codesOK = "OK"

// flood sends n calls at once over one connection and counts the answers
// by status code; every call must end within a minute.
func flood(t *testing.T, addr string, n int, call func(context.Context, *grpc.ClientConn) error) map[string]int {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	var mu sync.Mutex
	out := map[string]int{}
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			err := call(ctx, cc)
			code := status.Code(err).String()
			mu.Lock()
			out[code]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if out[codes.DeadlineExceeded.String()] == n {
		t.Fatalf("every call ran out of time: %v", out)
	}
	return out
}

// peakRSS is the process's resident set high-water mark (VmHWM).
func peakRSS(t *testing.T, p *proc) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc/<pid>/status")
	return 0
}
