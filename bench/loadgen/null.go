package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
)

// runNull serves an API that answers OK / CONTINUE at once: the ceiling of
// gRPC on this machine, measured in the same run as the real server.
func runNull(args []string) error {
	fs := flag.NewFlagSet("null", flag.ExitOnError)
	api := fs.String("api", "", "rls, authz, extproc or http (an HTTP upstream answering 200)")
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	_ = fs.Parse(args)
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	if *api == "http" {
		fmt.Printf("null http serving on %s\n", lis.Addr())
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return serveHTTPNull(ctx, lis)
	}
	s := grpc.NewServer(grpc.MaxRecvMsgSize(64 << 20))
	switch *api {
	case "rls":
		rlsv3.RegisterRateLimitServiceServer(s, nullRLS{})
	case "authz":
		authv3.RegisterAuthorizationServer(s, nullAuthz{})
	case "extproc":
		extprocv3.RegisterExternalProcessorServer(s, nullExtProc{})
	default:
		return fmt.Errorf("-api must be rls, authz, extproc or http")
	}
	fmt.Printf("null %s serving on %s\n", *api, lis.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		s.Stop()
	}()
	return s.Serve(lis)
}

type nullRLS struct {
	rlsv3.UnimplementedRateLimitServiceServer
}

func (nullRLS) ShouldRateLimit(context.Context, *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	return &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK}, nil
}

type nullAuthz struct {
	authv3.UnimplementedAuthorizationServer
}

func (nullAuthz) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return &authv3.CheckResponse{Status: &status.Status{}, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}}}, nil
}

type nullExtProc struct {
	extprocv3.UnimplementedExternalProcessorServer
}

func (nullExtProc) Process(st extprocv3.ExternalProcessor_ProcessServer) error {
	for {
		req, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		resp := &extprocv3.ProcessingResponse{}
		cont := &extprocv3.CommonResponse{}
		switch req.Request.(type) {
		case *extprocv3.ProcessingRequest_RequestHeaders:
			resp.Response = &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{Response: cont}}
		case *extprocv3.ProcessingRequest_ResponseHeaders:
			resp.Response = &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{Response: cont}}
		case *extprocv3.ProcessingRequest_RequestBody:
			resp.Response = &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{Response: cont}}
		case *extprocv3.ProcessingRequest_ResponseBody:
			resp.Response = &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{Response: cont}}
		case *extprocv3.ProcessingRequest_RequestTrailers:
			resp.Response = &extprocv3.ProcessingResponse_RequestTrailers{RequestTrailers: &extprocv3.TrailersResponse{}}
		case *extprocv3.ProcessingRequest_ResponseTrailers:
			resp.Response = &extprocv3.ProcessingResponse_ResponseTrailers{ResponseTrailers: &extprocv3.TrailersResponse{}}
		default:
			continue
		}
		if err := st.Send(resp); err != nil {
			return err
		}
	}
}
