package extproc

import (
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/codes"

	"github.com/gatehouse/gatehouse/extproc/hygiene"
)

// A proxyless gRPC client's ext_proc filter (gRPC-Go, gRFC A93) speaks
// the same protocol as Envoy with other habits, which this file bridges:
//
//   - it sends no pseudo-headers: the RPC's path and authority come as the
//     request.path and request.host attributes (grpcRequestHeaders puts
//     them back, so that the processors and route matching see a request
//     line as from Envoy);
//   - it reads a header mutation's value, not raw_value (only -bin
//     headers come from raw_value), and refuses mutations of pseudo,
//     host and grpc-* headers;
//   - it ends an RPC on an immediate response with the gRPC status in
//     grpc_status (INTERNAL when unset) and details as the message; the
//     HTTP status and body mean nothing to it;
//   - it ignores mode_override.

// hasHeader reports whether hs holds name.
func hasHeader(hs []hygiene.Header, name string) bool {
	_, ok := headerValue(hs, name)
	return ok
}

// grpcRequestHeaders is hs with the request line of a gRPC call: every
// RPC is a POST to its method's path.
func grpcRequestHeaders(hs []hygiene.Header, path, host string) []hygiene.Header {
	out := make([]hygiene.Header, 0, len(hs)+3)
	out = append(out, hygiene.Header{Name: ":method", Value: "POST"}, hygiene.Header{Name: ":path", Value: path})
	if host != "" {
		out = append(out, hygiene.Header{Name: ":authority", Value: host})
	}
	return append(out, hs...)
}

// grpcClientAnswer rewrites an answer in the fields a gRPC client reads.
// It builds new header values rather than editing them: the security
// headers of a route are shared by every stream.
func grpcClientAnswer(resp *extprocv3.ProcessingResponse) *extprocv3.ProcessingResponse {
	out := &extprocv3.ProcessingResponse{DynamicMetadata: resp.GetDynamicMetadata()}
	common := func(c *extprocv3.CommonResponse) *extprocv3.CommonResponse {
		if c == nil {
			return nil
		}
		return &extprocv3.CommonResponse{
			Status: c.GetStatus(), HeaderMutation: valueMutation(c.GetHeaderMutation()),
			BodyMutation: c.GetBodyMutation(), Trailers: c.GetTrailers(), ClearRouteCache: c.GetClearRouteCache(),
		}
	}
	switch r := resp.GetResponse().(type) {
	case *extprocv3.ProcessingResponse_RequestHeaders:
		out.Response = &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{Response: common(r.RequestHeaders.GetResponse())}}
	case *extprocv3.ProcessingResponse_ResponseHeaders:
		out.Response = &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{Response: common(r.ResponseHeaders.GetResponse())}}
	case *extprocv3.ProcessingResponse_RequestBody:
		out.Response = &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{Response: common(r.RequestBody.GetResponse())}}
	case *extprocv3.ProcessingResponse_ResponseBody:
		out.Response = &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{Response: common(r.ResponseBody.GetResponse())}}
	case *extprocv3.ProcessingResponse_RequestTrailers:
		out.Response = &extprocv3.ProcessingResponse_RequestTrailers{RequestTrailers: &extprocv3.TrailersResponse{HeaderMutation: valueMutation(r.RequestTrailers.GetHeaderMutation())}}
	case *extprocv3.ProcessingResponse_ResponseTrailers:
		out.Response = &extprocv3.ProcessingResponse_ResponseTrailers{ResponseTrailers: &extprocv3.TrailersResponse{HeaderMutation: valueMutation(r.ResponseTrailers.GetHeaderMutation())}}
	case *extprocv3.ProcessingResponse_ImmediateResponse:
		imm := r.ImmediateResponse
		out.Response = &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocv3.ImmediateResponse{
			Status:     imm.GetStatus(),
			Headers:    valueMutation(imm.GetHeaders()),
			GrpcStatus: &extprocv3.GrpcStatus{Status: uint32(grpcCode(int(imm.GetStatus().GetCode())))},
			Details:    imm.GetDetails(),
		}}
	default:
		return resp
	}
	return out
}

// valueMutation is m with every value in value (raw_value for -bin
// headers, which gRPC sends base64-encoded).
func valueMutation(m *extprocv3.HeaderMutation) *extprocv3.HeaderMutation {
	if m == nil {
		return nil
	}
	out := &extprocv3.HeaderMutation{RemoveHeaders: m.GetRemoveHeaders(), SetHeaders: make([]*corev3.HeaderValueOption, len(m.GetSetHeaders()))}
	for i, o := range m.GetSetHeaders() {
		h := o.GetHeader()
		hv := &corev3.HeaderValue{Key: h.GetKey(), Value: h.GetValue(), RawValue: h.GetRawValue()}
		if !strings.HasSuffix(hv.Key, "-bin") && len(hv.RawValue) > 0 {
			hv.Value, hv.RawValue = string(hv.RawValue), nil
		}
		out.SetHeaders[i] = &corev3.HeaderValueOption{Header: hv, AppendAction: o.GetAppendAction(), KeepEmptyValue: o.GetKeepEmptyValue()}
	}
	return out
}

// grpcCode maps the HTTP status of an answer gatehouse made to the gRPC
// status a gRPC client ends the RPC with (the inverse of gRPC's own
// HTTP-to-gRPC mapping, where one exists).
func grpcCode(httpStatus int) codes.Code {
	switch httpStatus {
	case 400, 422:
		return codes.InvalidArgument
	case 401:
		return codes.Unauthenticated
	case 403:
		return codes.PermissionDenied
	case 404:
		return codes.NotFound
	case 409:
		return codes.Aborted
	case 413, 429:
		return codes.ResourceExhausted
	case 502, 503, 504:
		return codes.Unavailable
	}
	return codes.Internal
}
