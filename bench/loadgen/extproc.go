package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

func runExtProc(args []string) error {
	fs := flag.NewFlagSet("extproc", flag.ExitOnError)
	var c common
	c.register(fs, "127.0.0.1:9192")
	route := fs.String("route", "", `attributes["envoy.filters.http.ext_proc"]["xds.route_name"] (empty = none)`)
	extra := headerFlags{}
	fs.Var(extra, "header", "extra request header k=v (repeatable)")
	path := fs.String("path", "/", ":path of the simulated request")
	method := fs.String("method", "", ":method (default GET, or POST with -body-bytes)")
	host := fs.String("host", "localhost:10000", ":authority of the simulated request")
	bodyBytes := fs.Int("body-bytes", 0, "the request has a JSON body of this many bytes")
	respBodyBytes := fs.Int("resp-body-bytes", 0, "the response has a JSON body of this many bytes")
	sendBodies := fs.Bool("send-bodies", false, "send bodies (BUFFERED); otherwise headers only")
	_ = fs.Parse(args)
	if err := c.check(); err != nil {
		return err
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
	clients := make([]extprocv3.ExternalProcessorClient, len(conns))
	for i, cc := range conns {
		defer cc.Close()
		clients[i] = extprocv3.NewExternalProcessorClient(cc)
	}
	reqBody, respBody := jsonBody(*bodyBytes), jsonBody(*respBodyBytes)
	var attrs map[string]*structpb.Struct
	if *route != "" {
		attrs = map[string]*structpb.Struct{"envoy.filters.http.ext_proc": {Fields: map[string]*structpb.Value{
			"xds.route_name": structpb.NewStringValue(*route),
		}}}
	}
	hdr := func(kv map[string]string) *corev3.HeaderMap {
		hm := &corev3.HeaderMap{}
		for k, v := range kv {
			hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: k, RawValue: []byte(v)})
		}
		return hm
	}
	desc := fmt.Sprintf("extproc route=%q body=%d resp_body=%d send_bodies=%v", *route, *bodyBytes, *respBodyBytes, *sendBodies)
	return c.run(desc, nil, func(ctx context.Context, conn int, rng *rand.Rand) (string, error) {
		st, err := clients[conn].Process(ctx)
		if err != nil {
			return "", err
		}
		rh := map[string]string{":authority": *host, ":path": *path, ":method": *method, ":scheme": "http",
			"user-agent": "loadgen", "x-request-id": strconv.FormatUint(rng.Uint64(), 16)}
		if reqBody != nil {
			rh["content-type"] = "application/json"
			rh["content-length"] = strconv.Itoa(len(reqBody))
		}
		for k, v := range extra {
			rh[k] = v
		}
		msgs := []*extprocv3.ProcessingRequest{{
			Request:    &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{Headers: hdr(rh), EndOfStream: reqBody == nil}},
			Attributes: attrs,
		}}
		if reqBody != nil && *sendBodies {
			msgs = append(msgs, &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{Body: reqBody, EndOfStream: true}}})
		}
		resph := map[string]string{":status": "200", "content-type": "application/json"}
		msgs = append(msgs, &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{Headers: hdr(resph), EndOfStream: respBody == nil}}})
		if respBody != nil && *sendBodies {
			msgs = append(msgs, &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{Body: respBody, EndOfStream: true}}})
		}
		for _, m := range msgs {
			if err := st.Send(m); err != nil {
				return "", err
			}
			resp, err := st.Recv()
			if err != nil {
				return "", err
			}
			if ir := resp.GetImmediateResponse(); ir != nil {
				_ = st.CloseSend()
				return "immediate_" + strconv.Itoa(int(ir.GetStatus().GetCode())), nil
			}
			if !answers(m, resp) {
				_ = st.CloseSend()
				return "", errors.New("answer of the wrong kind")
			}
		}
		if err := st.CloseSend(); err != nil {
			return "", err
		}
		for {
			if _, err := st.Recv(); err != nil {
				if errors.Is(err, io.EOF) {
					return "continued", nil
				}
				return "", err
			}
		}
	})
}

// answers reports whether resp is the answer to req's kind.
func answers(req *extprocv3.ProcessingRequest, resp *extprocv3.ProcessingResponse) bool {
	switch req.Request.(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		return resp.GetRequestHeaders() != nil
	case *extprocv3.ProcessingRequest_RequestBody:
		return resp.GetRequestBody() != nil
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		return resp.GetResponseHeaders() != nil
	case *extprocv3.ProcessingRequest_ResponseBody:
		return resp.GetResponseBody() != nil
	}
	return false
}
