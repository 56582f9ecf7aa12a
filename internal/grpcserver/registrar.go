package grpcserver

import (
	"context"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Registrar is where components register their services: each method is
// wrapped so that its request is bounded by the in-flight budget before it
// is read, and a request that does not decode is answered
// InvalidArgument. gRPC reads a unary request before any interceptor runs,
// so this cannot be an interceptor.
func (s *Server) Registrar() grpc.ServiceRegistrar { return registrar{s} }

type registrar struct{ s *Server }

func (r registrar) RegisterService(desc *grpc.ServiceDesc, impl any) {
	d := *desc
	d.Methods = make([]grpc.MethodDesc, len(desc.Methods))
	for i, m := range desc.Methods {
		m.Handler = r.s.unary(m.Handler)
		d.Methods[i] = m
	}
	d.Streams = make([]grpc.StreamDesc, len(desc.Streams))
	for i, sd := range desc.Streams {
		sd.Handler = r.s.stream(sd.Handler)
		d.Streams[i] = sd
	}
	r.s.GRPC.RegisterService(&d, impl)
}

// unary reserves the server's receive limit before the request is read
// (so a flood of large requests waits, buffered no more than one window
// each, instead of being read all at once), keeps the decoded size while
// the handler runs, and returns it when the RPC ends.
func (s *Server) unary(h grpc.MethodHandler) grpc.MethodHandler {
	return func(srv any, ctx context.Context, dec func(any) error, in grpc.UnaryServerInterceptor) (any, error) {
		var held int64
		defer func() { s.budget.release(held) }()
		read := func(m any) error {
			if err := s.budget.acquire(ctx, s.limit); err != nil {
				return err
			}
			held = s.limit
			if err := decode(dec, m); err != nil {
				return err
			}
			if n := sizeOf(m); n < held {
				s.budget.release(held - n)
				held = n
			}
			return nil
		}
		return h(srv, ctx, read, in)
	}
}

// stream bounds a stream's messages: the first one, which a flood of new
// streams sends at once, reserves the receive limit before it is read, as
// a unary request does; every message keeps its decoded size reserved
// until the next one is asked for or the stream ends. A later message is
// reserved once it is read: a stream waits for its next message for as
// long as its HTTP request lives, and reserving the limit for that wait
// would cap concurrent streams, not bytes. What a later message can hold
// is bounded by the receive limit times the streams of a connection.
func (s *Server) stream(h grpc.StreamHandler) grpc.StreamHandler {
	return func(srv any, ss grpc.ServerStream) error {
		bs := &budgetStream{ServerStream: ss, s: s}
		defer bs.releaseHeld()
		return h(srv, bs)
	}
}

type budgetStream struct {
	grpc.ServerStream
	s *Server
	// mu guards the fields below: a handler may receive on a goroutine of
	// its own (go-control-plane does) and return before it stops.
	mu      sync.Mutex
	held    int64
	started bool
	closed  bool
}

// releaseHeld returns the last message's bytes when the handler ends;
// what a receive still under way takes after that is returned at once.
func (b *budgetStream) releaseHeld() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.s.budget.release(b.held)
	b.held, b.closed = 0, true
}

// keep records n bytes as the stream's, unless the handler has ended.
func (b *budgetStream) keep(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		b.s.budget.release(n)
		return
	}
	b.held = n
}

func (b *budgetStream) RecvMsg(m any) error {
	b.mu.Lock()
	b.s.budget.release(b.held)
	b.held = 0
	first := !b.started
	b.started = true
	b.mu.Unlock()
	if first {
		if err := b.s.budget.acquire(b.Context(), b.s.limit); err != nil {
			return err
		}
		if err := decode(b.ServerStream.RecvMsg, m); err != nil {
			b.s.budget.release(b.s.limit)
			return err
		}
		n := min(sizeOf(m), b.s.limit)
		b.s.budget.release(b.s.limit - n)
		b.keep(n)
		return nil
	}
	if err := decode(b.ServerStream.RecvMsg, m); err != nil {
		return err
	}
	n := sizeOf(m)
	if err := b.s.budget.acquire(b.Context(), n); err != nil {
		return err
	}
	b.keep(n)
	return nil
}

// envelope carries a request message through gRPC's decoding so that a
// message that does not decode comes back to the registrar's wrapper as
// an error it can answer InvalidArgument: gRPC answers Internal itself,
// and writes that status before any handler could change it, when a codec
// fails. Only the registrar's wrappers pass envelopes; any other caller
// of the codec gets gRPC's own behaviour.
type envelope struct {
	msg any
	err error
}

// codec is gRPC's proto codec, with envelopes.
type codec struct{ encoding.CodecV2 }

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	e, ok := v.(*envelope)
	if !ok {
		return c.CodecV2.Unmarshal(data, v)
	}
	if err := c.CodecV2.Unmarshal(data, e.msg); err != nil {
		e.err = err
		if pm, ok := e.msg.(proto.Message); ok {
			proto.Reset(pm)
		}
	}
	return nil
}

// decode reads one request into m through an envelope.
func decode(recv func(any) error, m any) error {
	e := &envelope{msg: m}
	if err := recv(e); err != nil {
		return badInput(err)
	}
	if e.err != nil {
		return status.Errorf(codes.InvalidArgument, "gatehouse: the request does not decode: %v", e.err)
	}
	return nil
}
