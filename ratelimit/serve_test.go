package ratelimit

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
)

// TestPooledAnswersBehindGRPCServer: behind the production gRPC server
// (whose codec releases each answer once written, while the handler's
// request goes back to its pool), concurrent requests each get their own
// answer: subject i's limit is i+1 an hour, so the remaining count and the
// headers of every answer say whose it is. Run with -race.
func TestPooledAnswersBehindGRPCServer(t *testing.T) {
	dir := t.TempDir()
	var y string
	const subjects = 16
	y = "domain: pooled\ndescriptors:\n"
	for i := range subjects {
		y += fmt.Sprintf("  - key: subject\n    value: s%d\n    rate_limit: {unit: hour, requests_per_unit: %d}\n", i, i+1)
	}
	writeFile(t, filepath.Join(dir, "pooled.yaml"), y)
	cfg := load(t, "apiVersion: gatehouse/v1\nratelimit:\n  envoyConfigs: ["+dir+"]\n")
	clients := servePeer(t, cfg, nil)
	var wg sync.WaitGroup
	errs := make(chan error, subjects)
	for i := range subjects {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := clients[i%len(clients)]
			req := &rlsv3.RateLimitRequest{Domain: "pooled", Descriptors: []*ratelimitv3.RateLimitDescriptor{{
				Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: "subject", Value: fmt.Sprintf("s%d", i)}}}}}
			for n := 1; n <= i+3; n++ {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				resp, err := c.ShouldRateLimit(ctx, req)
				cancel()
				if err != nil {
					errs <- err
					return
				}
				limit := i + 1
				wantCode, wantLeft := rlsv3.RateLimitResponse_OK, limit-n
				if n > limit {
					wantCode, wantLeft = rlsv3.RateLimitResponse_OVER_LIMIT, 0
				}
				st := resp.GetStatuses()[0]
				if resp.GetOverallCode() != wantCode || int(st.GetLimitRemaining()) != wantLeft || int(st.GetCurrentLimit().GetRequestsPerUnit()) != limit {
					errs <- fmt.Errorf("s%d request %d: %v; want %v, %d remaining of %d", i, n, resp, wantCode, wantLeft, limit)
					return
				}
				hdr := map[string]string{}
				for _, h := range resp.GetResponseHeadersToAdd() {
					hdr[h.GetKey()] = h.GetValue()
				}
				if hdr["x-ratelimit-limit"] != fmt.Sprint(limit) || hdr["x-ratelimit-remaining"] != fmt.Sprint(wantLeft) {
					errs <- fmt.Errorf("s%d request %d: headers %v; want limit %d, remaining %d", i, n, hdr, limit, wantLeft)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
