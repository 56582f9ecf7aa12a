package testenv

import (
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Registerer adds services to a server: a component's Register, or a
// function over the server itself.
type Registerer interface {
	func(*grpc.Server) | func(grpc.ServiceRegistrar)
}

// ServeGRPC serves a gRPC server on a free loopback port for the length
// of the test, with the services register adds, and returns its address.
func ServeGRPC[F Registerer](t testing.TB, register F) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	switch r := any(register).(type) {
	case func(*grpc.Server):
		r(s)
	case func(grpc.ServiceRegistrar):
		r(s)
	}
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	return lis.Addr().String()
}

// Dial returns a plaintext client connection to addr, closed when the
// test ends.
func Dial(t testing.TB, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// GRPC is ServeGRPC and a Dial of it: a loopback server with the services
// register adds and a client connection to it. The connection closes
// before the server stops.
func GRPC[F Registerer](t testing.TB, register F) *grpc.ClientConn {
	t.Helper()
	return Dial(t, ServeGRPC(t, register))
}
