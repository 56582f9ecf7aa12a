package grpcserver

import (
	"bytes"
	"errors"
	"testing"

	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
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
