//go:build vtprotobuf

package grpcserver

import (
	"bytes"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
)

// TestCodecMarshalVT (built with -tags vtprotobuf, which adds
// go-control-plane's generated marshalers): the codec's vtprotobuf path
// writes what gRPC's proto codec writes, for answers with every kind of
// field (nested messages, repeated ones, a Struct, enums, a oneof, unknown
// fields) — the same message, in the same bytes where protobuf-go's order
// is defined (no map, no oneof, which it writes last).
func TestCodecMarshalVT(t *testing.T) {
	md, err := structpb.NewStruct(map[string]any{"domain": "d", "descriptors": []any{map[string]any{"entries": []any{"a=b"}}}, "n": 2.5, "ok": true})
	if err != nil {
		t.Fatal(err)
	}
	withUnknown := &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK}
	withUnknown.ProtoReflect().SetUnknown([]byte{0xf8, 0x01, 0x07}) // field 31, varint 7
	msgs := []proto.Message{
		&rlsv3.RateLimitResponse{},
		withUnknown,
		&rlsv3.RateLimitResponse{
			OverallCode: rlsv3.RateLimitResponse_OVER_LIMIT,
			Statuses: []*rlsv3.RateLimitResponse_DescriptorStatus{
				{Code: rlsv3.RateLimitResponse_OVER_LIMIT, CurrentLimit: &rlsv3.RateLimitResponse_RateLimit{Name: "n", RequestsPerUnit: 10, Unit: rlsv3.RateLimitResponse_RateLimit_HOUR}, LimitRemaining: 0, DurationUntilReset: &durationpb.Duration{Seconds: 3599}},
				{Code: rlsv3.RateLimitResponse_OK, LimitRemaining: 4294967295},
			},
			ResponseHeadersToAdd: []*corev3.HeaderValue{{Key: "ratelimit", Value: `"1h";r=0;t=3599`}, {Key: "retry-after", Value: "3599"}},
			RequestHeadersToAdd:  []*corev3.HeaderValue{{Key: "x-gatehouse-ratelimit", Value: "degraded-open"}},
			DynamicMetadata:      md,
			RawBody:              []byte("body"),
		},
		&authv3.CheckResponse{HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-user", Value: "alice"}}},
		}}, DynamicMetadata: md},
	}
	ours := codec{encoding.GetCodecV2(protoenc.Name)}
	theirs := encoding.GetCodecV2(protoenc.Name)
	for _, m := range msgs {
		if _, ok := m.(vtMarshaler); !ok {
			t.Fatalf("%T has no vtprotobuf marshaler; the test would prove nothing", m)
		}
		got, err := ours.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		want, err := theirs.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		back := m.ProtoReflect().New().Interface()
		if err := proto.Unmarshal(got.Materialize(), back); err != nil || !proto.Equal(back, m) {
			t.Errorf("Marshal(%T %v) decodes to %v (%v)", m, m, back, err)
		}
		_, isRLS := m.(*rlsv3.RateLimitResponse)
		if isRLS && m.(*rlsv3.RateLimitResponse).DynamicMetadata == nil && !bytes.Equal(got.Materialize(), want.Materialize()) {
			t.Errorf("Marshal(%T %v) =\n%x; want (gRPC's codec)\n%x", m, m, got.Materialize(), want.Materialize())
		}
		got.Free()
		want.Free()
	}
}
