package grpcserver

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/gatehouse/gatehouse/internal/config"
)

// panicky is a test service whose only method panics.
var panicky = grpc.ServiceDesc{
	ServiceName: "test.Panicky",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Boom",
		Handler: func(srv any, ctx context.Context, dec func(any) error, in grpc.UnaryServerInterceptor) (any, error) {
			req := new(emptypb.Empty)
			if err := dec(req); err != nil {
				return nil, err
			}
			h := func(context.Context, any) (any, error) { panic("boom") }
			return in(ctx, req, &grpc.UnaryServerInfo{Server: srv, FullMethod: "/test.Panicky/Boom"}, h)
		},
	}},
}

func testGRPC() config.GRPC {
	return config.GRPC{
		MaxRecvMessageSize: 1 << 20, MaxSendMessageSize: 1 << 20, MaxConcurrentStreams: 100, MaxInflightBytes: 1 << 20,
		Keepalive: config.Keepalive{
			Time: config.Duration(time.Minute), Timeout: config.Duration(10 * time.Second),
			MinClientPingInterval: config.Duration(10 * time.Second), PermitWithoutStream: true,
		},
	}
}

// start serves a test server with the panicky and echo services and
// returns it, its metrics, its log and a client.
func start(t *testing.T, cfg config.GRPC, limit int64) (*Server, *Metrics, *strings.Builder, *grpc.ClientConn) {
	t.Helper()
	lis, err := Listen("test", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	logs := &strings.Builder{}
	s := New("test", lis, Options{GRPC: cfg, RecvLimit: limit, Metrics: m, Logger: slog.New(slog.NewTextHandler(&syncWriter{w: logs}, nil))})
	s.Registrar().RegisterService(&panicky, struct{}{})
	s.Registrar().RegisterService(&echo, struct{}{})
	go func() { _ = s.Serve() }()
	t.Cleanup(func() { s.Stop(context.Background(), nil) })
	cc, err := grpc.NewClient(s.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return s, m, logs, cc
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (w *syncWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(b)
}

// echo answers a BytesValue with its length, after waiting on hold (when
// set) so that a test can keep requests in flight.
var (
	hold = make(chan struct{})
	echo = grpc.ServiceDesc{
		ServiceName: "test.Echo",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "Len",
			Handler: func(srv any, ctx context.Context, dec func(any) error, in grpc.UnaryServerInterceptor) (any, error) {
				req := new(wrapperspb.BytesValue)
				if err := dec(req); err != nil {
					return nil, err
				}
				if len(req.Value) > 0 && req.Value[0] == 'h' {
					select {
					case <-hold:
					case <-ctx.Done():
						return nil, ctx.Err()
					}
				}
				return wrapperspb.Int64(int64(len(req.Value))), nil
			},
		}},
	}
)

func TestPanicBecomesInternalAndIsCounted(t *testing.T) {
	_, m, logs, cc := start(t, testGRPC(), 0)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := cc.Invoke(ctx, "/test.Panicky/Boom", &emptypb.Empty{}, &emptypb.Empty{})
	if status.Code(err) != codes.Internal || strings.Contains(err.Error(), "boom") {
		t.Fatalf("Boom() = %v; want Internal without the panic value", err)
	}
	// The server is still up.
	err = cc.Invoke(ctx, "/test.Panicky/Boom", &emptypb.Empty{}, &emptypb.Empty{})
	if status.Code(err) != codes.Internal {
		t.Fatalf("second Boom() = %v; want Internal again", err)
	}
	if !strings.Contains(logs.String(), "panic in handler") {
		t.Errorf("the panic was not logged:\n%s", logs.String())
	}
	waitCount(t, m, "/test.Panicky/Boom", codes.Internal, 2)
}

// waitCount waits for handled_total to reach want: an RPC is counted when
// it ends on the server, which may be just after the client has its answer.
func waitCount(t *testing.T, m *Metrics, method string, code codes.Code, want float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := testutil.ToFloat64(m.handled.WithLabelValues("test", method, code.String()))
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("handled_total{method=%q,code=%v} = %v; want %v", method, code, got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rawCodec sends bytes as they are, for requests that are not protobuf.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return v.([]byte), nil }
func (rawCodec) Unmarshal(b []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), b...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// TestBadInput: a request that does not decode is answered InvalidArgument
// (gRPC itself says Internal) and counted like any other RPC; one larger
// than the server's limit is ResourceExhausted, counted too.
func TestBadInput(t *testing.T) {
	_, m, _, cc := start(t, testGRPC(), 1024)
	for _, tc := range []struct {
		name string
		body []byte
		want codes.Code
	}{
		{"corrupt protobuf", []byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f}, codes.InvalidArgument},
		// health.v1.HealthCheckRequest.service (field 1, string) with a byte
		// that is not UTF-8.
		{"invalid UTF-8 in a string field", []byte{0x0a, 0x02, 0xc3, 0x28}, codes.InvalidArgument},
		{"larger than the server's limit", append([]byte{0x0a, 0x80, 0x10}, make([]byte, 2048)...), codes.ResourceExhausted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			method := "/grpc.health.v1.Health/Check"
			before := testutil.ToFloat64(m.handled.WithLabelValues("test", method, tc.want.String()))
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			var out []byte
			err := cc.Invoke(ctx, method, tc.body, &out, grpc.ForceCodec(rawCodec{}))
			if status.Code(err) != tc.want {
				t.Fatalf("Check(%x…) = %v; want %v", tc.body[:4], err, tc.want)
			}
			waitCount(t, m, method, tc.want, before+1)
		})
	}
}

// TestInflightBudget: with a budget of two requests' worth, a third
// request with a deadline waits for room and is answered once one ends;
// one without a deadline is refused at once with ResourceExhausted.
func TestInflightBudget(t *testing.T) {
	cfg := testGRPC()
	cfg.MaxInflightBytes = 2 * 4096
	_, m, _, cc := start(t, cfg, 4096)
	held := make(chan error, 2)
	for range 2 {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			held <- cc.Invoke(ctx, "/test.Echo/Len", wrapperspb.Bytes([]byte("hold")), new(wrapperspb.Int64Value))
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(m.inflight.WithLabelValues("test")) < 8 {
		if time.Now().After(deadline) {
			t.Fatalf("inflight bytes = %v; want both held requests counted", testutil.ToFloat64(m.inflight.WithLabelValues("test")))
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Decoded, each holds its size (4+2 bytes), not the limit: room for a
	// third request, which is answered at once.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := cc.Invoke(ctx, "/test.Echo/Len", wrapperspb.Bytes([]byte("x")), new(wrapperspb.Int64Value)); err != nil {
		t.Fatalf("a small request beside two held ones = %v; want OK", err)
	}
	close(hold)
	for range 2 {
		if err := <-held; err != nil {
			t.Fatalf("held request = %v", err)
		}
	}
	if got := testutil.ToFloat64(m.inflight.WithLabelValues("test")); got != 0 {
		t.Fatalf("inflight bytes after every RPC ended = %v; want 0", got)
	}
}

func TestBudgetRefusesWithoutDeadline(t *testing.T) {
	b := newBudget(10, prometheus.NewGauge(prometheus.GaugeOpts{Name: "x"}))
	if err := b.acquire(context.Background(), 8); err != nil {
		t.Fatal(err)
	}
	if err := b.acquire(context.Background(), 8); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("acquire without a deadline on a full budget = %v; want ResourceExhausted", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := b.acquire(ctx, 8); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("acquire until the deadline on a full budget = %v; want DeadlineExceeded", err)
	}
	b.release(8)
	if err := b.acquire(context.Background(), 8); err != nil {
		t.Fatalf("acquire after a release = %v", err)
	}
}

func TestListenInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = Listen("authz", l.Addr().String())
	if err == nil || !strings.Contains(err.Error(), "authz: cannot listen on "+l.Addr().String()+": the address is already in use") {
		t.Fatalf("Listen(in use) = %v", err)
	}
	_, err = Listen("authz", "256.0.0.1:1")
	if err == nil || !strings.HasPrefix(err.Error(), "authz: cannot listen on 256.0.0.1:1: ") {
		t.Fatalf("Listen(bad address) = %v", err)
	}
}

// TestUnknownMethodCountedAsGRPCAnswers: a method the server does not have
// is answered exactly as gRPC answers it (Unimplemented, gRPC's message,
// taken here from a plain grpc.Server) and counted like every RPC.
func TestUnknownMethodCountedAsGRPCAnswers(t *testing.T) {
	_, m, _, cc := start(t, testGRPC(), 0)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	plain := grpc.NewServer()
	plain.RegisterService(&echo, struct{}{})
	go func() { _ = plain.Serve(lis) }()
	defer plain.Stop()
	pc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	for _, method := range []string{"/test.Echo/Nope", "/no.Such/Method"} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := cc.Invoke(ctx, method, &emptypb.Empty{}, &emptypb.Empty{})
		want := pc.Invoke(ctx, method, &emptypb.Empty{}, &emptypb.Empty{})
		cancel()
		if status.Code(want) != codes.Unimplemented || err == nil || err.Error() != want.Error() {
			t.Fatalf("Invoke(%s) = %v; want %v (a plain grpc.Server's answer)", method, err, want)
		}
		waitCount(t, m, method, codes.Unimplemented, 1)
	}
}

// BenchmarkUnary is one small unary RPC through the server's wrappers
// (budget, decode, metrics) on loopback; allocs/op counts client and server.
func BenchmarkUnary(b *testing.B) {
	lis, err := Listen("test", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	s := New("test", lis, Options{GRPC: testGRPC(), RecvLimit: 1024, Metrics: m, Logger: slog.New(slog.DiscardHandler)})
	s.Registrar().RegisterService(&echo, struct{}{})
	go func() { _ = s.Serve() }()
	defer s.Stop(context.Background(), nil)
	cc, err := grpc.NewClient(s.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Close()
	req := wrapperspb.Bytes([]byte("0123456789"))
	b.ReportAllocs()
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		out := new(wrapperspb.Int64Value)
		for pb.Next() {
			if err := cc.Invoke(context.Background(), "/test.Echo/Len", req, out); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
