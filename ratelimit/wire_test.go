package ratelimit

import (
	"bytes"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// wireRequests are requests of every shape the decoder takes itself, and
// some it leaves to protobuf.
func wireRequests() [][]byte {
	entries := func(kv ...string) []*ratelimitv3.RateLimitDescriptor_Entry {
		var es []*ratelimitv3.RateLimitDescriptor_Entry
		for i := 0; i+1 < len(kv); i += 2 {
			es = append(es, &ratelimitv3.RateLimitDescriptor_Entry{Key: kv[i], Value: kv[i+1]})
		}
		return es
	}
	many := &rlsv3.RateLimitRequest{Domain: "many"}
	for i := range 7 {
		many.Descriptors = append(many.Descriptors, &ratelimitv3.RateLimitDescriptor{Entries: entries("k", string(rune('a'+i)), "subject", "user-1", "x", "y")})
	}
	msgs := []*rlsv3.RateLimitRequest{
		{},
		{Domain: "gatehouse_subject", Descriptors: []*ratelimitv3.RateLimitDescriptor{{Entries: entries("tier", "free", "subject", "user-42")}}},
		{Domain: "bench", HitsAddend: 3, Descriptors: []*ratelimitv3.RateLimitDescriptor{
			{Entries: entries("tier", "free", "subject", "u")},
			{Entries: entries("daily", "free", "subject", "u"), HitsAddend: wrapperspb.UInt64(0), IsNegativeHits: true},
			{Entries: entries("k", ""), Limit: &ratelimitv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: 5, Unit: typev3.RateLimitUnit_HOUR}},
			{},
			{Entries: entries("é", "ü✓")},
		}},
		{Domain: "d", Descriptors: []*ratelimitv3.RateLimitDescriptor{{Limit: &ratelimitv3.RateLimitDescriptor_RateLimitOverride{}, HitsAddend: &wrapperspb.UInt64Value{}}}},
		{Domain: "d", Descriptors: []*ratelimitv3.RateLimitDescriptor{{Entries: entries("a", "1", "b", "2", "c", "3", "d", "4", "e", "5", "f", "6", "g", "7", "h", "8", "i", "9", "j", "10")}}},
		many,
	}
	var out [][]byte
	for _, m := range msgs {
		b, err := proto.Marshal(m)
		if err != nil {
			panic(err)
		}
		out = append(out, b)
	}
	one := out[1]
	out = append(out,
		append(append([]byte(nil), one...), one...),                                    // every field twice: the last domain, the descriptors appended
		append(append([]byte(nil), one...), 0xf8, 0x01, 0x07),                          // an unknown field
		[]byte{0x0a, 0x02, 0xc3, 0x28},                                                 // invalid UTF-8 in the domain
		[]byte{0x12, 0x06, 0x0a, 0x04, 0x0a, 0x02, 0xc3, 0x28},                         // invalid UTF-8 in a key
		[]byte{0x12, 0x04, 0x12, 0x00, 0x12, 0x00},                                     // limit given twice: merged
		[]byte{0x12, 0x04, 0x1a, 0x02, 0x08, 0x05},                                     // hits_addend 5
		[]byte{0x12, 0x02, 0x1a, 0x04},                                                 // truncated
		[]byte{0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, // varint overflow
		[]byte{0x08, 0x01},                                                             // domain with the wrong wire type
		[]byte{0x12, 0x04, 0x10, 0xff, 0xff, 0x03},                                     // is it a limit? wrong wire type
		[]byte{0x12, 0x05, 0x12, 0x03, 0x10, 0xf4, 0x03},                               // unit 500: an open enum
		[]byte{0x00}, // field 0
	)
	return out
}

// FuzzDecodeRequest holds the RLS request decoder to proto.Unmarshal:
// the same error or none, and the same message.
func FuzzDecodeRequest(f *testing.F) {
	for _, b := range wireRequests() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var r request
		err := r.UnmarshalVT(data)
		var want rlsv3.RateLimitRequest
		wantErr := proto.Unmarshal(data, &want)
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("decode(%x) error = %v; proto.Unmarshal's = %v", data, err, wantErr)
		}
		if err != nil {
			return
		}
		if diff := cmp.Diff(&want, &r.msg, protocmp.Transform()); diff != "" {
			t.Fatalf("decode(%x) differs from proto.Unmarshal (-want +got):\n%s", data, diff)
		}
		if got := r.SizeVT(); got != len(data) {
			t.Fatalf("SizeVT = %d; want %d, the size it came in", got, len(data))
		}
	})
}

// TestDecodeRequestTakesEnvoyShapes: the requests Envoy sends are decoded
// by the decoder itself, not handed to protobuf (which would be correct,
// but slow: the point of the decoder).
func TestDecodeRequestTakesEnvoyShapes(t *testing.T) {
	for i, b := range wireRequests()[:7] {
		var r request
		if !r.decode(b) {
			t.Errorf("request %d (%x) was left to protobuf", i, b)
		}
	}
}

// FuzzEncodeResponse holds the answer encoder to proto.Marshal, byte for
// byte, on answers of every field the limiter sets (and some it leaves to
// protobuf).
func FuzzEncodeResponse(f *testing.F) {
	f.Add(uint8(1), uint8(2), uint32(100), uint8(3), "name", uint32(7), int64(3599), int32(0), "ratelimit", `"1h";r=0;t=3599`, []byte(nil), uint8(0))
	f.Add(uint8(2), uint8(0), uint32(0), uint8(0), "", uint32(0), int64(-1), int32(-5), "", "", []byte("raw"), uint8(1))
	f.Add(uint8(0), uint8(1), uint32(1<<31), uint8(200), "é", uint32(1<<32-1), int64(1<<40), int32(999999999), "k", "", []byte{0xff}, uint8(2))
	f.Fuzz(func(t *testing.T, overall, code uint8, rpu uint32, unit uint8, name string, remaining uint32, sec int64, nanos int32, hk, hv string, raw []byte, extra uint8) {
		m := &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_Code(overall % 4)}
		st := &rlsv3.RateLimitResponse_DescriptorStatus{Code: rlsv3.RateLimitResponse_Code(code), LimitRemaining: remaining}
		if rpu != 0 || unit != 0 || name != "" {
			st.CurrentLimit = &rlsv3.RateLimitResponse_RateLimit{RequestsPerUnit: rpu, Unit: rlsv3.RateLimitResponse_RateLimit_Unit(unit), Name: name}
		}
		if sec != 0 || nanos != 0 || extra&1 != 0 {
			st.DurationUntilReset = &durationpb.Duration{Seconds: sec, Nanos: nanos}
		}
		m.Statuses = []*rlsv3.RateLimitResponse_DescriptorStatus{st, {}}
		if hk != "" || hv != "" || len(raw) > 0 {
			m.ResponseHeadersToAdd = []*corev3.HeaderValue{{Key: hk, Value: hv}, {Key: "retry-after", Value: "1"}}
			m.RequestHeadersToAdd = []*corev3.HeaderValue{{Key: hk, RawValue: raw}}
		}
		if extra&2 != 0 {
			m.RawBody = raw
		}
		switch extra % 8 {
		case 4:
			m.DynamicMetadata = &structpb.Struct{Fields: map[string]*structpb.Value{"domain": structpb.NewStringValue(name)}}
		case 5:
			m.ProtoReflect().SetUnknown([]byte{0xf8, 0x01, 0x07})
		case 6:
			m.Quota = &rlsv3.RateLimitResponse_Quota{Requests: rpu}
		}
		want, wantErr := proto.Marshal(m)
		buf := make([]byte, sizeResponse(m))
		n, err := marshalResponse(buf, m)
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("encode(%v) error = %v; proto.Marshal's = %v", m, err, wantErr)
		}
		if err != nil {
			return // invalid UTF-8 in a string: refused by both
		}
		if !bytes.Equal(buf[:n], want) || n != len(buf) {
			t.Fatalf("encode(%v) =\n%x; proto.Marshal:\n%x", m, buf[:n], want)
		}
	})
}
