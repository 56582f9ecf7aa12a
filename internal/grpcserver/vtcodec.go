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

// marshaledNotifee is an answer told when its bytes are written: a handler
// whose answer lives in pooled memory gives it back then. After Marshal
// gRPC reads the message only to hand it to stats handlers (OutPayload);
// the ones gatehouse installs (its tracing) do not read it.
type marshaledNotifee interface{ Marshaled() }

// vtUnmarshaler is a message that decodes itself (the vtprotobuf
// convention). data is only valid during the call: what the message keeps
// of it must be copied.
type vtUnmarshaler interface {
	UnmarshalVT(data []byte) error
}

// marshalVT marshals m in one allocation when it is small (an RLS
// answer), else into a buffer of gRPC's pool, which gRPC returns
// to the pool once the message is written. (gRPC pools only buffers of
// 1 KiB or more: below that a pooled buffer is never given back, and
// taking one costs more than a plain allocation.)
func marshalVT(m vtMarshaler) (mem.BufferSlice, error) {
	size := m.SizeVT()
	// The bytes, the Buffer over them and the one-element slice gRPC is
	// given share an allocation, of one of two size classes.
	switch {
	case size <= len(smallOut{}.data):
		o := new(smallOut)
		o.sb = o.data[:size:size]
		o.bs[0] = &o.sb
		return o.bs[:], marshalInto(m, o.sb)
	case size <= len(mediumOut{}.data):
		o := new(mediumOut)
		o.sb = o.data[:size:size]
		o.bs[0] = &o.sb
		return o.bs[:], marshalInto(m, o.sb)
	}
	if mem.IsBelowBufferPoolingThreshold(size) {
		buf := make([]byte, size)
		if _, err := m.MarshalToSizedBufferVTStrict(buf); err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(buf)}, nil
	}
	pool := mem.DefaultBufferPool()
	buf := pool.Get(size)
	if _, err := m.MarshalToSizedBufferVTStrict((*buf)[:size]); err != nil {
		pool.Put(buf)
		return nil, err
	}
	*buf = (*buf)[:size]
	return mem.BufferSlice{mem.NewBuffer(buf, pool)}, nil
}

// smallOut and mediumOut are 256 and 512 bytes, Go's allocation size
// classes: an RLS answer with headers (~170 bytes) takes a smallOut.
type smallOut struct {
	sb   mem.SliceBuffer
	bs   [1]mem.Buffer
	data [256 - 40]byte
}

type mediumOut struct {
	sb   mem.SliceBuffer
	bs   [1]mem.Buffer
	data [512 - 40]byte
}

func marshalInto(m vtMarshaler, buf []byte) error {
	_, err := m.MarshalToSizedBufferVTStrict(buf)
	return err
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
