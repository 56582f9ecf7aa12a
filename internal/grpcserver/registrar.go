package grpcserver

import (
	"context"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
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
		m.Handler = r.s.unary(r.s.meter.method("/"+desc.ServiceName+"/"+m.MethodName), m.Handler)
		d.Methods[i] = m
	}
	d.Streams = make([]grpc.StreamDesc, len(desc.Streams))
	for i, sd := range desc.Streams {
		sd.Handler = r.s.stream(r.s.meter.method("/"+desc.ServiceName+"/"+sd.StreamName), sd.Handler)
		d.Streams[i] = sd
	}
	r.s.services.Store(desc.ServiceName, true)
	r.s.GRPC.RegisterService(&d, impl)
}

// unary counts the RPC (mm), reserves the server's receive limit before
// the request is read (so a flood of large requests waits, buffered no
// more than one window each, instead of being read all at once), keeps the
// decoded size while the handler runs, and returns it when the RPC ends.
func (s *Server) unary(mm *methodMetrics, h grpc.MethodHandler) grpc.MethodHandler {
	return func(srv any, ctx context.Context, dec func(any) error, in grpc.UnaryServerInterceptor) (resp any, err error) {
		start := s.meter.begin(mm)
		u := unaryPool.Get().(*unaryRead)
		u.s, u.ctx, u.dec, u.held = s, ctx, dec, 0
		defer func() {
			s.budget.release(u.held)
			*u = unaryRead{read: u.read}
			unaryPool.Put(u)
			s.meter.end(mm, start, err)
		}()
		return h(srv, ctx, u.read, in)
	}
}

// unaryRead is the dec a unary handler is given, pooled with its bound
// method value: a closure would cost two allocations an RPC.
type unaryRead struct {
	s    *Server
	ctx  context.Context
	dec  func(any) error
	held int64
	read func(any) error
	env  envelope
}

var unaryPool = sync.Pool{New: func() any {
	u := &unaryRead{}
	u.read = u.readMsg
	return u
}}

func (u *unaryRead) readMsg(m any) error {
	s := u.s
	if err := s.budget.acquire(u.ctx, s.limit); err != nil {
		return err
	}
	u.held = s.limit
	u.env = envelope{msg: m}
	err := decodeInto(u.dec, &u.env)
	u.env = envelope{}
	if err != nil {
		return err
	}
	if n := sizeOf(m); n < u.held {
		s.budget.release(u.held - n)
		u.held = n
	}
	return nil
}

// stream bounds a stream's messages: the first one, which a flood of new
// streams sends at once, reserves the receive limit before it is read, as
// a unary request does; every message keeps its decoded size reserved
// until the next one is asked for or the stream ends. A later message is
// reserved once it is read: a stream waits for its next message for as
// long as its HTTP request lives, and reserving the limit for that wait
// would cap concurrent streams, not bytes. What a later message can hold
// is bounded by the receive limit times the streams of a connection.
func (s *Server) stream(mm *methodMetrics, h grpc.StreamHandler) grpc.StreamHandler {
	return func(srv any, ss grpc.ServerStream) (err error) {
		start := s.meter.begin(mm)
		defer func() { s.meter.end(mm, start, err) }()
		bs := &budgetStream{ServerStream: ss, s: s}
		defer bs.releaseHeld()
		return h(srv, bs)
	}
}

// unknown answers a method the server does not have as gRPC does
// (Unimplemented, with gRPC's message), and counts it under the name the
// client asked for, as every RPC is counted.
func (s *Server) unknown(_ any, ss grpc.ServerStream) error {
	full, _ := grpc.MethodFromServerStream(ss)
	mm := s.meter.method(full)
	start := s.meter.begin(mm)
	err := unknownMethod(full, func(service string) bool { _, ok := s.services.Load(service); return ok })
	s.meter.end(mm, start, err)
	return err
}

// unknownMethod is gRPC's answer to a call of full (/service/method) that
// no registered service has.
func unknownMethod(full string, known func(service string) bool) error {
	sm := strings.TrimPrefix(full, "/")
	service, method := sm, ""
	if pos := strings.LastIndex(sm, "/"); pos >= 0 {
		service, method = sm[:pos], sm[pos+1:]
	}
	if !known(service) {
		return status.Errorf(codes.Unimplemented, "unknown service %v", service)
	}
	return status.Errorf(codes.Unimplemented, "unknown method %v for service %v", method, service)
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

// codec is gRPC's proto codec, with envelopes. A message with
// vtprotobuf's marshaler (the go-control-plane service types) is marshaled
// by it, into a pooled buffer, any other as gRPC's codec does but into
// outPool's finer tiers; a request message that decodes itself
// (UnmarshalVT) does so.
type codec struct{ encoding.CodecV2 }

// Codec is the codec gatehouse's gRPC servers use, for a server built
// elsewhere (the xDS load scenario) that must encode as production does.
func Codec() encoding.CodecV2 { return codec{encoding.GetCodecV2(protoenc.Name)} }

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	if m, ok := v.(vtMarshaler); ok {
		data, err := marshalVT(m)
		if r, ok := v.(marshaledNotifee); ok {
			r.Marshaled()
		}
		return data, err
	}
	if m, ok := v.(proto.Message); ok {
		return marshalProto(m)
	}
	return c.CodecV2.Marshal(v)
}

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	e, ok := v.(*envelope)
	if !ok {
		return c.CodecV2.Unmarshal(data, v)
	}
	if err := c.unmarshal(data, e.msg); err != nil {
		e.err = err
		if pm, ok := e.msg.(proto.Message); ok {
			proto.Reset(pm)
		}
	}
	return nil
}

func (c codec) unmarshal(data mem.BufferSlice, m any) error {
	if u, ok := m.(vtUnmarshaler); ok {
		return unmarshalVT(data, u)
	}
	return c.CodecV2.Unmarshal(data, m)
}

// decode reads one request into m through an envelope.
func decode(recv func(any) error, m any) error {
	return decodeInto(recv, &envelope{msg: m})
}

// decodeInto reads one request into e.msg.
func decodeInto(recv func(any) error, e *envelope) error {
	if err := recv(e); err != nil {
		return badInput(err)
	}
	if e.err != nil {
		return status.Errorf(codes.InvalidArgument, "gatehouse: the request does not decode: %v", e.err)
	}
	return nil
}
