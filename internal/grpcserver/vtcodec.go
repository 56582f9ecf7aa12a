package grpcserver

import (
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// outPool holds the buffers of large messages gatehouse marshals (xDS
// responses, mostly): a tier at every power of two from 1 KiB to 16 MiB.
// gRPC's default pool jumps from 32 KiB to 1 MiB, so a 120 KB route
// configuration took — and, on a pool emptied by a collection, allocated
// and zeroed — a 1 MiB buffer: after 1,000 Envoys reconnected at once,
// 1.3 of the 4.4 s of CPU the next change cost (bench/xds -finepool
// measured it). A buffer here is at most twice its message.
var outPool = func() mem.BufferPool {
	p, err := mem.NewBinaryTieredBufferPool(10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24)
	if err != nil {
		panic(err) // the sizes above are constant and valid
	}
	return p
}()

// marshalProto is gRPC's proto codec's Marshal with outPool.
func marshalProto(m proto.Message) (mem.BufferSlice, error) {
	size := proto.Size(m)
	if mem.IsBelowBufferPoolingThreshold(size) {
		b, err := proto.Marshal(m)
		if err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	buf := outPool.Get(size)
	out, err := proto.MarshalOptions{UseCachedSize: true}.MarshalAppend((*buf)[:0], m)
	if err != nil {
		outPool.Put(buf)
		return nil, err
	}
	*buf = out
	return mem.BufferSlice{mem.NewBuffer(buf, outPool)}, nil
}

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
// answer), else into a buffer of outPool, which gRPC returns
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
	buf := outPool.Get(size)
	if _, err := m.MarshalToSizedBufferVTStrict((*buf)[:size]); err != nil {
		outPool.Put(buf)
		return nil, err
	}
	*buf = (*buf)[:size]
	return mem.BufferSlice{mem.NewBuffer(buf, outPool)}, nil
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
