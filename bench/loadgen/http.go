package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// runHTTP drives an HTTP/1.1 server (Envoy's listener) with GETs, closed
// loop (-concurrency workers) or, with -rate, open loop at a fixed rate:
// requests are started on schedule whatever the answers do, and latency
// counts from the scheduled start, so a server that stalls cannot hide its
// queue (no coordinated omission).
func runHTTP(args []string) error {
	fs := flag.NewFlagSet("http", flag.ExitOnError)
	var c common
	c.register(fs, "127.0.0.1:10000")
	path := fs.String("path", "/", "request path")
	host := fs.String("host", "", "Host header (default: -addr)")
	tokensFile := fs.String("tokens", "", "file of bearer tokens, one per line, sent round-robin (empty = none)")
	rate := fs.Float64("rate", 0, "requests per second, open loop (0 = closed loop at -concurrency)")
	extra := headerFlags{}
	fs.Var(extra, "header", "extra request header k=v (repeatable)")
	_ = fs.Parse(args)
	if err := c.check(); err != nil {
		return err
	}
	var tokens []string
	if *tokensFile != "" {
		var err error
		if tokens, err = readLines(*tokensFile); err != nil {
			return err
		}
	}
	// One connection per worker: HTTP/1.1 has one request in flight each.
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: c.timeout}).DialContext,
		MaxIdleConnsPerHost: c.concurrency, MaxConnsPerHost: c.concurrency,
		DisableCompression: true,
	}
	tr.Protocols = new(http.Protocols)
	tr.Protocols.SetHTTP1(true)
	client := &http.Client{Transport: tr, Timeout: c.timeout}
	url := "http://" + c.addr + *path
	var next atomic.Uint64
	req := func(ctx context.Context, _ int, _ *rand.Rand) (string, error) {
		r, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return "", err
		}
		if *host != "" {
			r.Host = *host
		}
		for k, v := range extra {
			r.Header.Set(k, v)
		}
		if len(tokens) > 0 {
			r.Header.Set("Authorization", "Bearer "+tokens[next.Add(1)%uint64(len(tokens))])
		}
		resp, err := client.Do(r)
		if err != nil {
			return "", err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return "status_" + strconv.Itoa(resp.StatusCode), nil
	}
	desc := fmt.Sprintf("HTTP/1.1 GET %s", *path)
	if *rate <= 0 {
		return c.run(desc, nil, req)
	}
	return c.runOpen(desc, *rate, req)
}

// runOpen sends req at rate per second for c.duration after c.warmup, on
// at most c.concurrency requests in flight (a request whose turn comes
// while all are busy waits, and its wait counts).
func (c *common) runOpen(desc string, rate float64, req request) error {
	interval := time.Duration(float64(time.Second) / rate)
	type result struct {
		lat   int64
		label string
		err   error
		rec   bool
	}
	results := make(chan result, 1<<16)
	slots := make(chan struct{}, c.concurrency)
	var wg sync.WaitGroup
	begin := time.Now()
	measureFrom := begin.Add(c.warmup)
	end := measureFrom.Add(c.duration)
	var all []int64
	labels, errs := map[string]int64{}, map[string]int64{}
	done := make(chan struct{})
	go func() {
		for r := range results {
			if !r.rec {
				continue
			}
			all = append(all, r.lat)
			if r.err != nil {
				code := "transport"
				if errors.Is(r.err, context.DeadlineExceeded) {
					code = "DeadlineExceeded"
				}
				errs[code]++
				continue
			}
			labels[r.label]++
		}
		close(done)
	}()
	cpu0 := cpuSeconds()
	for i := 0; ; i++ {
		at := begin.Add(time.Duration(i) * interval)
		if !at.Before(end) {
			break
		}
		if d := time.Until(at); d > 0 {
			time.Sleep(d)
		}
		slots <- struct{}{}
		wg.Add(1)
		go func(at time.Time) {
			defer wg.Done()
			defer func() { <-slots }()
			ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
			label, err := req(ctx, 0, nil)
			cancel()
			results <- result{lat: int64(time.Since(at)), label: label, err: err, rec: !at.Before(measureFrom)}
		}(at)
	}
	wg.Wait()
	close(results)
	<-done
	secs := c.duration.Seconds()
	cpu := 100 * (cpuSeconds() - cpu0) / time.Since(begin).Seconds()
	return c.report(fmt.Sprintf("%s at %.0f req/s (open loop)", desc, rate), []string{fmt.Sprintf("rate=%.0f", rate)}, all, labels, errs, secs, cpu)
}

// serveHTTPNull answers every request 200 "ok" at once: the upstream of
// the Envoy load scenario.
func serveHTTPNull(ctx context.Context, lis net.Listener) error {
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("content-type", "text/plain")
			_, _ = w.Write([]byte("ok\n"))
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
