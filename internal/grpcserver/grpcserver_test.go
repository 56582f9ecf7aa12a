package grpcserver

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
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
		MaxRecvMessageSize: 1 << 20, MaxSendMessageSize: 1 << 20, MaxConcurrentStreams: 100,
		Keepalive: config.Keepalive{
			Time: config.Duration(time.Minute), Timeout: config.Duration(10 * time.Second),
			MinClientPingInterval: config.Duration(10 * time.Second), PermitWithoutStream: true,
		},
	}
}

func TestPanicBecomesInternalAndIsCounted(t *testing.T) {
	lis, err := Listen("test", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	s := New("test", lis, testGRPC(), nil, m, slog.New(slog.NewTextHandler(&logs, nil)))
	s.GRPC.RegisterService(&panicky, struct{}{})
	go func() { _ = s.Serve() }()
	defer s.Stop(context.Background(), nil)

	cc, err := grpc.NewClient(s.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = cc.Invoke(ctx, "/test.Panicky/Boom", &emptypb.Empty{}, &emptypb.Empty{})
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
	if got := testutil.ToFloat64(m.handled.WithLabelValues("test", "/test.Panicky/Boom", "Internal")); got != 2 {
		t.Errorf("handled_total{code=Internal} = %v; want 2", got)
	}
}

func TestMessageSizeLimit(t *testing.T) {
	lis, err := Listen("test", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := NewMetrics(prometheus.NewRegistry())
	cfg := testGRPC()
	cfg.MaxRecvMessageSize = 1024
	s := New("test", lis, cfg, nil, m, slog.New(slog.NewTextHandler(io.Discard, nil)))
	go func() { _ = s.Serve() }()
	defer s.Stop(context.Background(), nil)
	cc, err := grpc.NewClient(s.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// A request bigger than the limit is refused before it is decoded.
	big := &wrapperspb.BytesValue{Value: make([]byte, 4096)}
	err = cc.Invoke(ctx, "/grpc.health.v1.Health/Check", big, &emptypb.Empty{})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("oversized request = %v; want ResourceExhausted", err)
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
