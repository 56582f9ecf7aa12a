package grpcserver

import (
	"bytes"
	"errors"
	"testing"

	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// selfCoded is a message that encodes and decodes itself.
type selfCoded struct{ b []byte }

func (m *selfCoded) SizeVT() int { return len(m.b) }
func (m *selfCoded) MarshalToSizedBufferVTStrict(buf []byte) (int, error) {
	return copy(buf, m.b), nil
}
func (m *selfCoded) UnmarshalVT(data []byte) error {
	if bytes.Equal(data, []byte("bad")) {
		return errors.New("bad")
	}
	m.b = append(m.b[:0], data...)
	return nil
}

// TestCodecUsesSelfCoding: a message with vtprotobuf's methods is encoded
// and decoded by them (the RLS messages of package ratelimit are), one
// that fails to decode comes back in the envelope as the error the
// wrappers answer InvalidArgument.
func TestCodecUsesSelfCoding(t *testing.T) {
	c := codec{encoding.GetCodecV2(protoenc.Name)}
	for _, size := range []int{0, 5, 216, 217, 472, 473, 4096, 70000} {
		want := bytes.Repeat([]byte{'x'}, size)
		out, err := c.Marshal(&selfCoded{b: want})
		if err != nil || !bytes.Equal(out.Materialize(), want) {
			t.Fatalf("Marshal(%d bytes) = %d bytes, %v", size, len(out.Materialize()), err)
		}
		out.Free()
	}
	in := mem.BufferSlice{mem.SliceBuffer("wor"), mem.SliceBuffer("ld")}
	var m selfCoded
	if err := c.Unmarshal(in, &envelope{msg: &m}); err != nil || string(m.b) != "world" {
		t.Fatalf("Unmarshal(2 buffers) = %q, %v; want world", m.b, err)
	}
	e := &envelope{msg: &m}
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer("bad")}, e); err != nil || e.err == nil {
		t.Fatalf("Unmarshal(bad) = %v, envelope error %v; want the error in the envelope", err, e.err)
	}
	if n := sizeOf(&selfCoded{b: []byte("four")}); n != 4 {
		t.Fatalf("sizeOf = %d; want 4 (SizeVT)", n)
	}
}

// TestCodecFineBuffers: a large protobuf message (an xDS response) is
// encoded as gRPC's codec encodes it, into a pooled buffer at most twice
// its size — gRPC's default pool would hand a 120 KB message 1 MiB.
func TestCodecFineBuffers(t *testing.T) {
	c := codec{encoding.GetCodecV2(protoenc.Name)}
	for _, size := range []int{10, 2000, 40_000, 120_000, 700_000} {
		m := wrapperspb.Bytes(bytes.Repeat([]byte{'r'}, size))
		want, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		out, err := c.Marshal(m)
		if err != nil || !bytes.Equal(out.Materialize(), want) {
			t.Fatalf("Marshal(%d bytes) = %d bytes, %v; want gRPC's encoding", size, out.Len(), err)
		}
		if len(out) != 1 {
			t.Fatalf("Marshal(%d bytes) gave %d buffers", size, len(out))
		}
		if b := out[0].ReadOnlyData(); !mem.IsBelowBufferPoolingThreshold(len(want)) && cap(b) > 2*len(want) {
			t.Errorf("Marshal(%d bytes) took a %d-byte buffer; want at most twice the message", len(want), cap(b))
		}
		out.Free()
	}
}
