package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func runAuthz(args []string) error {
	fs := flag.NewFlagSet("authz", flag.ExitOnError)
	var c common
	c.register(fs, "127.0.0.1:9191")
	route := fs.String("route", "", `context_extensions["route"] (empty = none)`)
	tokensFile := fs.String("tokens", "", "file of bearer tokens, one per line (empty = no authorization header)")
	random := fs.Bool("random", false, "pick tokens at random instead of round-robin")
	extra := headerFlags{}
	fs.Var(extra, "header", "extra request header k=v (repeatable)")
	path := fs.String("path", "/", ":path of the simulated request")
	method := fs.String("method", "", ":method (default GET, or POST with -body-bytes)")
	host := fs.String("host", "localhost:10000", ":authority of the simulated request")
	bodyBytes := fs.Int("body-bytes", 0, "send a JSON raw_body of this many bytes")
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
	if *method == "" {
		*method = "GET"
		if *bodyBytes > 0 {
			*method = "POST"
		}
	}
	conns, err := c.dial()
	if err != nil {
		return err
	}
	clients := make([]authv3.AuthorizationClient, len(conns))
	for i, cc := range conns {
		defer cc.Close()
		clients[i] = authv3.NewAuthorizationClient(cc)
	}
	body := jsonBody(*bodyBytes)
	var next atomic.Uint64
	build := func(rng *rand.Rand) *authv3.CheckRequest {
		id := strconv.FormatUint(rng.Uint64(), 16)
		h := map[string]string{
			":authority": *host, ":path": *path, ":method": *method, ":scheme": "http",
			"user-agent": "loadgen", "x-request-id": id, "x-forwarded-proto": "http",
		}
		if len(tokens) > 0 {
			i := int((next.Add(1) - 1) % uint64(len(tokens)))
			if *random {
				i = rng.IntN(len(tokens))
			}
			h["authorization"] = "Bearer " + tokens[i]
		}
		if body != nil {
			h["content-type"] = "application/json"
			h["content-length"] = strconv.Itoa(len(body))
		}
		for k, v := range extra {
			h[k] = v
		}
		req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
				SocketAddress: &corev3.SocketAddress{Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000 + uint32(rng.IntN(20000))}},
			}}},
			Request: &authv3.AttributeContext_Request{
				Time: timestamppb.New(time.Now()),
				Http: &authv3.AttributeContext_HttpRequest{
					Id: id, Method: *method, Headers: h, Path: *path, Host: *host, Scheme: "http",
					Protocol: "HTTP/1.1", Size: int64(len(body)), RawBody: body,
				},
			},
		}}
		if *route != "" {
			req.Attributes.ContextExtensions = map[string]string{"route": *route}
		}
		return req
	}
	desc := fmt.Sprintf("authz route=%q tokens=%d body=%d", *route, len(tokens), *bodyBytes)
	return c.run(desc, nil, func(ctx context.Context, conn int, rng *rand.Rand) (string, error) {
		resp, err := clients[conn].Check(ctx, build(rng))
		if err != nil {
			return "", err
		}
		if codes.Code(resp.GetStatus().GetCode()) == codes.OK {
			return "allowed", nil
		}
		if d := resp.GetDeniedResponse(); d != nil {
			code := int(d.GetStatus().GetCode())
			if code == 0 {
				code = 403
			}
			return "denied_" + strconv.Itoa(code), nil
		}
		return "denied_403", nil
	})
}
