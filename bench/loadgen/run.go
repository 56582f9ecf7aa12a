package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// common are the flags every load command takes.
type common struct {
	addr        string
	concurrency int
	conns       int
	duration    time.Duration
	total       int64
	warmup      time.Duration
	timeout     time.Duration
	wait        time.Duration
	seed        uint64
}

func (c *common) register(fs *flag.FlagSet, defAddr string) {
	fs.StringVar(&c.addr, "addr", defAddr, "gRPC address host:port")
	fs.IntVar(&c.concurrency, "concurrency", 16, "concurrent in-flight requests (workers)")
	fs.IntVar(&c.conns, "conns", 4, "gRPC (HTTP/2) connections shared by the workers")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "measured duration (ignored when -n > 0)")
	fs.Int64Var(&c.total, "n", 0, "total measured requests (0 = use -duration)")
	fs.DurationVar(&c.warmup, "warmup", time.Second, "unmeasured warm-up before measuring")
	fs.DurationVar(&c.timeout, "timeout", 2*time.Second, "per-request deadline")
	fs.DurationVar(&c.wait, "wait", 0, "retry a probe request up to this long until the server answers, then start")
	fs.Uint64Var(&c.seed, "seed", 1, "PRNG seed")
}

func (c *common) check() error {
	if c.concurrency < 1 || c.conns < 1 {
		return errors.New("-concurrency and -conns must be at least 1")
	}
	return nil
}

// dial opens c.conns connections.
func (c *common) dial() ([]*grpc.ClientConn, error) {
	out := make([]*grpc.ClientConn, c.conns)
	for i := range out {
		cc, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)))
		if err != nil {
			return nil, fmt.Errorf("dial %s: %w", c.addr, err)
		}
		out[i] = cc
	}
	return out, nil
}

// request sends one request on connection conn and returns the answer's
// label (ok, over, denied_403, ...) or an error.
type request func(ctx context.Context, conn int, rng *rand.Rand) (string, error)

type worker struct {
	lat    []int64
	labels map[string]int64
	errs   map[string]int64
}

// run drives req with c's load shape and prints the report. desc names the
// target in the report; extra key=value pairs go into the RESULT line.
func (c *common) run(desc string, extra []string, req request) error {
	if c.wait > 0 {
		deadline := time.Now().Add(c.wait)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err := req(ctx, 0, rand.New(rand.NewPCG(c.seed, 99)))
			cancel()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("server at %s not ready after %v: %w", c.addr, c.wait, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	var measuring, stop atomic.Bool
	var remaining atomic.Int64
	remaining.Store(c.total)
	workers := make([]*worker, c.concurrency)
	var wg sync.WaitGroup
	for w := range workers {
		ws := &worker{lat: make([]int64, 0, 1<<16), labels: map[string]int64{}, errs: map[string]int64{}}
		workers[w] = ws
		rng := rand.New(rand.NewPCG(c.seed, uint64(w)))
		conn := w % c.conns
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				rec := measuring.Load()
				if rec && c.total > 0 && remaining.Add(-1) < 0 {
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
				t0 := time.Now()
				label, err := req(ctx, conn, rng)
				d := time.Since(t0)
				cancel()
				if !rec {
					continue
				}
				ws.lat = append(ws.lat, int64(d))
				if err != nil {
					code := status.Code(err).String()
					if errors.Is(err, context.DeadlineExceeded) {
						code = "DeadlineExceeded"
					}
					ws.errs[code]++
					continue
				}
				ws.labels[label]++
			}
		}()
	}
	time.Sleep(c.warmup)
	cpu0 := cpuSeconds()
	start := time.Now()
	measuring.Store(true)
	if c.total > 0 {
		for remaining.Load() > 0 {
			time.Sleep(time.Millisecond)
		}
	} else {
		time.Sleep(c.duration)
	}
	stop.Store(true)
	wg.Wait()
	secs := time.Since(start).Seconds()
	cpu := 100 * (cpuSeconds() - cpu0) / secs
	var all []int64
	labels := map[string]int64{}
	errs := map[string]int64{}
	for _, ws := range workers {
		all = append(all, ws.lat...)
		for k, v := range ws.labels {
			labels[k] += v
		}
		for k, v := range ws.errs {
			errs[k] += v
		}
	}
	return c.report(desc, extra, all, labels, errs, secs, cpu)
}

// report prints the figures of a run: latencies in ns, answers by label,
// errors by code.
func (c *common) report(desc string, extra []string, all []int64, labels, errs map[string]int64, secs, cpu float64) error {
	slices.Sort(all)
	n := int64(len(all))
	pct := func(p float64) float64 {
		if n == 0 {
			return 0
		}
		i := min(int64(p*float64(n)), n-1)
		return float64(all[i]) / 1e6
	}
	var sum, nerr int64
	for _, v := range all {
		sum += v
	}
	mean := 0.0
	if n > 0 {
		mean = float64(sum) / float64(n) / 1e6
	}
	var errParts, labelParts []string
	for k, v := range errs {
		nerr += v
		errParts = append(errParts, fmt.Sprintf("%s:%d", k, v))
	}
	for k, v := range labels {
		labelParts = append(labelParts, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(errParts)
	sort.Strings(labelParts)
	// Throughput counts answers only: a server failing fast must not look
	// fast. Errors are reported on their own.
	rps := float64(n-nerr) / secs
	fmt.Printf("target        %s  %s\n", c.addr, desc)
	fmt.Printf("load          concurrency=%d conns=%d measured=%.2fs requests=%d\n", c.concurrency, c.conns, secs, n)
	fmt.Printf("throughput    %.0f answered req/s\n", rps)
	fmt.Printf("latency (ms)  mean=%.3f p50=%.3f p90=%.3f p99=%.3f p99.9=%.3f max=%.3f\n", mean, pct(.5), pct(.9), pct(.99), pct(.999), pct(1))
	fmt.Printf("answers       %s errors=%d [%s]\n", strings.Join(labelParts, " "), nerr, strings.Join(errParts, ","))
	fmt.Printf("client cpu    %.0f%% of one core\n", cpu)
	fmt.Printf("RESULT addr=%s concurrency=%d conns=%d secs=%.3f n=%d rps=%.1f mean_ms=%.3f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f %s err=%d client_cpu_pct=%.0f %s\n",
		c.addr, c.concurrency, c.conns, secs, n, rps, mean, pct(.5), pct(.9), pct(.99), pct(.999), pct(1),
		strings.Join(labelParts, " "), nerr, cpu, strings.Join(extra, " "))
	if n > 0 && nerr == n {
		return errors.New("every request failed")
	}
	return nil
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

// headerFlags collects repeatable -header k=v flags.
type headerFlags map[string]string

func (h headerFlags) String() string { return fmt.Sprint(map[string]string(h)) }

func (h headerFlags) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("-header wants k=v, got %q", s)
	}
	h[strings.ToLower(k)] = v
	return nil
}

// readLines reads a file of one non-empty line each.
func readLines(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s holds no lines", path)
	}
	return out, nil
}

// jsonBody returns a JSON object of about n bytes.
func jsonBody(n int) []byte {
	if n <= 0 {
		return nil
	}
	var b strings.Builder
	b.WriteString(`{"items":[`)
	for i := 0; b.Len() < n-40; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":%d,"name":"item-%d","email":"user%d@example.com"}`, i, i, i)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}
