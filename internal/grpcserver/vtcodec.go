package grpcserver

import (
	"google.golang.org/grpc/mem"
)

// vtMarshaler is a message with vtprotobuf's generated marshaler, which
// go-control-plane ships for the Envoy service types (rls_vtproto.pb.go
// and the like): the fields in field-number order, as proto.Marshal
// writes them, without protobuf-go's reflection.
type vtMarshaler interface {
	SizeVT() int
	MarshalToSizedBufferVTStrict(dAtA []byte) (int, error)
}

// vtUnmarshaler is a message that decodes itself (the vtprotobuf
// convention). data is only valid during the call: what the message keeps
// of it must be copied.
type vtUnmarshaler interface {
	UnmarshalVT(data []byte) error
}

// marshalVT marshals m into a buffer of gRPC's pool, which gRPC returns
// to the pool once the message is written: no allocation for the bytes.
func marshalVT(m vtMarshaler) (mem.BufferSlice, error) {
	size := m.SizeVT()
	pool := mem.DefaultBufferPool()
	buf := pool.Get(size)
	if _, err := m.MarshalToSizedBufferVTStrict((*buf)[:size]); err != nil {
		pool.Put(buf)
		return nil, err
	}
	*buf = (*buf)[:size]
	return mem.BufferSlice{mem.NewBuffer(buf, pool)}, nil
}

// unmarshalVT hands m the request's bytes, without a copy when they came
// in one buffer.
func unmarshalVT(data mem.BufferSlice, m vtUnmarshaler) error {
	if len(data) == 1 {
		return m.UnmarshalVT(data[0].ReadOnlyData())
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	return m.UnmarshalVT(buf.ReadOnlyData())
}

// sizeVT is a message's size by vtprotobuf's sizer when it has one.
type sizeVT interface{ SizeVT() int }
