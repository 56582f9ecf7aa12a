package ratelimit

import (
	"errors"
	"sync"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"

	"github.com/gatehouse/gatehouse/ratelimit/limiter"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The RLS messages on the wire, without protobuf-go's reflection: a
// request decodes into pooled memory holding the message, its descriptors
// and entries (plus one string that every string field slices), and an
// answer encodes itself (into one block, by gatehouse's gRPC codec). Decoding profiled at
// about a tenth of the server's CPU and a dozen allocations a request.
//
// Each is exact or steps aside: the decoder takes the shapes Envoy sends
// and hands anything else (unknown fields, a message field given twice,
// which protobuf merges, invalid UTF-8, a malformed varint) to
// proto.Unmarshal, which decides; the encoder hands answers with fields it
// does not write (dynamic metadata, quota, unknown fields) to
// proto.Marshal. FuzzDecodeRequest and FuzzEncodeResponse hold both to
// protobuf-go's results.

// Inline room of a request: Envoy's descriptors rarely have more.
const (
	inlineDescs   = 2
	inlineEntries = 4
)

// request is what the RLS handler decodes a request into. It is also a
// proto.Message (its msg's), so that a gRPC server with the stock codec
// decodes it too, through protobuf.
type request struct {
	msg rlsv3.RateLimitRequest
	// size is the request's size on the wire.
	size    int
	descs   [inlineDescs]ratelimitv3.RateLimitDescriptor
	dptrs   [inlineDescs]*ratelimitv3.RateLimitDescriptor
	entries [inlineEntries]ratelimitv3.RateLimitDescriptor_Entry
	eptrs   [inlineEntries]*ratelimitv3.RateLimitDescriptor_Entry
}

var requestPool = sync.Pool{New: func() any { return new(request) }}

// release gives the request back to the pool, cleared.
func (r *request) release() {
	*r = request{}
	requestPool.Put(r)
}

// ProtoReflect makes the request the message it holds.
func (r *request) ProtoReflect() protoreflect.Message { return r.msg.ProtoReflect() }

// SizeVT is the size the request came in, which is what the server's
// in-flight budget holds for it (proto.Size would encode it again in
// thought, by reflection).
func (r *request) SizeVT() int { return r.size }

// UnmarshalVT decodes data into r.msg. data is not kept.
func (r *request) UnmarshalVT(data []byte) error {
	if r.decode(data) {
		r.size = len(data)
		return nil
	}
	*r = request{size: len(data)}
	return proto.Unmarshal(data, &r.msg)
}

// decoder walks one request; a false return leaves the request to
// proto.Unmarshal.
type decoder struct {
	r *request
	// s is the whole request as one string: string fields are slices of it.
	s  string
	nd int // descriptors used of r.descs
	ne int // entries used of r.entries
	pe int // pointers used of r.eptrs
	// more is room for entries past r.entries.
	more []ratelimitv3.RateLimitDescriptor_Entry
}

func (r *request) decode(data []byte) bool {
	d := decoder{r: r, s: string(data)}
	m := &r.msg
	m.Descriptors = r.dptrs[:0]
	b := 0
	for b < len(data) {
		num, typ, n := protowire.ConsumeTag(data[b:])
		if n < 0 {
			return false
		}
		b += n
		switch {
		case num == 1 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(data[b:])
			if n < 0 || !utf8.Valid(v) {
				return false
			}
			m.Domain = d.sub(b+n-len(v), len(v))
			b += n
		case num == 2 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(data[b:])
			if n < 0 {
				return false
			}
			desc := d.descriptor()
			if !d.decodeDescriptor(desc, v, b+n-len(v)) {
				return false
			}
			m.Descriptors = append(m.Descriptors, desc)
			b += n
		case num == 3 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(data[b:])
			if n < 0 {
				return false
			}
			m.HitsAddend, b = uint32(v), b+n
		default:
			return false
		}
	}
	if len(m.Descriptors) == 0 {
		m.Descriptors = nil // as protobuf leaves an absent repeated field
	}
	return true
}

// sub is the string of n bytes at off in the request.
func (d *decoder) sub(off, n int) string { return d.s[off : off+n] }

func (d *decoder) descriptor() *ratelimitv3.RateLimitDescriptor {
	if d.nd < inlineDescs {
		p := &d.r.descs[d.nd]
		d.nd++
		return p
	}
	return &ratelimitv3.RateLimitDescriptor{}
}

func (d *decoder) entry() *ratelimitv3.RateLimitDescriptor_Entry {
	if d.ne < inlineEntries {
		p := &d.r.entries[d.ne]
		d.ne++
		return p
	}
	if len(d.more) == 0 {
		d.more = make([]ratelimitv3.RateLimitDescriptor_Entry, 2*inlineEntries)
	}
	p := &d.more[0]
	d.more = d.more[1:]
	return p
}

// addEntry appends e to desc's entries, whose pointers start at start of
// r.eptrs while they fit there: each descriptor's run is contiguous, its
// slice capped at its end, so an append past it copies out.
func (d *decoder) addEntry(desc *ratelimitv3.RateLimitDescriptor, e *ratelimitv3.RateLimitDescriptor_Entry, start int) {
	if d.pe < inlineEntries && d.pe == start+len(desc.Entries) {
		d.r.eptrs[d.pe] = e
		d.pe++
		desc.Entries = d.r.eptrs[start:d.pe:d.pe]
		return
	}
	d.pe = inlineEntries // the shared pointers are closed to later descriptors
	desc.Entries = append(desc.Entries, e)
}

// decodeDescriptor decodes data, which starts at off in the request.
func (d *decoder) decodeDescriptor(desc *ratelimitv3.RateLimitDescriptor, data []byte, off int) bool {
	start := d.pe
	b := 0
	for b < len(data) {
		num, typ, n := protowire.ConsumeTag(data[b:])
		if n < 0 {
			return false
		}
		b += n
		switch {
		case num == 1 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(data[b:])
			if n < 0 {
				return false
			}
			e := d.entry()
			if !d.decodeEntry(e, v, off+b+n-len(v)) {
				return false
			}
			d.addEntry(desc, e, start)
			b += n
		case num == 2 && typ == protowire.BytesType:
			if desc.Limit != nil {
				return false // protobuf merges a message field given twice
			}
			v, n := protowire.ConsumeBytes(data[b:])
			if n < 0 {
				return false
			}
			desc.Limit = &ratelimitv3.RateLimitDescriptor_RateLimitOverride{}
			if !decodeOverride(desc.Limit, v) {
				return false
			}
			b += n
		case num == 3 && typ == protowire.BytesType:
			if desc.HitsAddend != nil {
				return false
			}
			v, n := protowire.ConsumeBytes(data[b:])
			if n < 0 {
				return false
			}
			desc.HitsAddend = &wrapperspb.UInt64Value{}
			if !decodeUInt64Value(desc.HitsAddend, v) {
				return false
			}
			b += n
		case num == 4 && typ == protowire.VarintType:
			x, n := protowire.ConsumeVarint(data[b:])
			if n < 0 {
				return false
			}
			desc.IsNegativeHits, b = x != 0, b+n
		default:
			return false
		}
	}
	return true
}

func (d *decoder) decodeEntry(e *ratelimitv3.RateLimitDescriptor_Entry, data []byte, off int) bool {
	b := 0
	for b < len(data) {
		num, typ, n := protowire.ConsumeTag(data[b:])
		if n < 0 || typ != protowire.BytesType || (num != 1 && num != 2) {
			return false
		}
		b += n
		v, n := protowire.ConsumeBytes(data[b:])
		if n < 0 || !utf8.Valid(v) {
			return false
		}
		s := d.sub(off+b+n-len(v), len(v))
		if num == 1 {
			e.Key = s
		} else {
			e.Value = s
		}
		b += n
	}
	return true
}

func decodeOverride(o *ratelimitv3.RateLimitDescriptor_RateLimitOverride, data []byte) bool {
	b := 0
	for b < len(data) {
		num, typ, n := protowire.ConsumeTag(data[b:])
		if n < 0 || typ != protowire.VarintType || (num != 1 && num != 2) {
			return false
		}
		b += n
		v, n := protowire.ConsumeVarint(data[b:])
		if n < 0 {
			return false
		}
		if num == 1 {
			o.RequestsPerUnit = uint32(v)
		} else {
			o.Unit = typev3.RateLimitUnit(int32(v))
		}
		b += n
	}
	return true
}

func decodeUInt64Value(w *wrapperspb.UInt64Value, data []byte) bool {
	b := 0
	for b < len(data) {
		num, typ, n := protowire.ConsumeTag(data[b:])
		if n < 0 || typ != protowire.VarintType || num != 1 {
			return false
		}
		b += n
		v, n := protowire.ConsumeVarint(data[b:])
		if n < 0 {
			return false
		}
		w.Value, b = v, b+n
	}
	return true
}

// response is the RLS handler's answer: the limiter's pooled answer with
// its encoder. It is still the message for anything else that looks at
// it, and gatehouse's gRPC codec gives its memory back once it is written
// (Marshaled).
type response struct{ a *limiter.Answer }

// ProtoReflect makes the response the message it holds.
func (r response) ProtoReflect() protoreflect.Message { return r.a.Response().ProtoReflect() }

// SizeVT is the encoded size.
func (r response) SizeVT() int { return sizeResponse(r.a.Response()) }

// MarshalToSizedBufferVTStrict writes the answer into buf, whose length
// is SizeVT().
func (r response) MarshalToSizedBufferVTStrict(buf []byte) (int, error) {
	return marshalResponse(buf, r.a.Response())
}

// Marshaled releases the answer: gRPC has its bytes, and neither gRPC nor
// the stats handlers gatehouse installs read the message again.
func (r response) Marshaled() { r.a.Release() }

// plain reports whether the encoder writes every field of m: the answers
// the limiter gives, save reference mode's dynamic metadata. A string that
// is not UTF-8 goes to protobuf too, which refuses it. Unknown fields are
// looked for on the response only (by reflection, which profiled at 3% of
// the server's CPU when done for every part): its parts are built in code
// by the limiter and the quota compiler, which set none.
func plain(m *rlsv3.RateLimitResponse) bool {
	if m.DynamicMetadata != nil || m.Quota != nil || len(m.ProtoReflect().GetUnknown()) > 0 {
		return false
	}
	for _, s := range m.Statuses {
		if s == nil || s.Quota != nil {
			return false
		}
		if l := s.CurrentLimit; l != nil && (l.UnitMultiplier != nil || !utf8.ValidString(l.Name)) {
			return false
		}
	}
	for _, hs := range [2][]*corev3.HeaderValue{m.ResponseHeadersToAdd, m.RequestHeadersToAdd} {
		for _, h := range hs {
			if h == nil || !utf8.ValidString(h.Key) || !utf8.ValidString(h.Value) {
				return false
			}
		}
	}
	return true
}

// sizeResponse is m's encoded size.
func sizeResponse(m *rlsv3.RateLimitResponse) int {
	if !plain(m) {
		return proto.Size(m)
	}
	n := 0
	if m.OverallCode != 0 {
		n += 1 + protowire.SizeVarint(uint64(int64(m.OverallCode)))
	}
	for _, s := range m.Statuses {
		n += 1 + sizeBytes(statusSize(s))
	}
	for _, h := range m.ResponseHeadersToAdd {
		n += 1 + sizeBytes(headerSize(h))
	}
	for _, h := range m.RequestHeadersToAdd {
		n += 1 + sizeBytes(headerSize(h))
	}
	if len(m.RawBody) > 0 {
		n += 1 + sizeBytes(len(m.RawBody))
	}
	return n
}

// marshalResponse writes m into buf, whose length is sizeResponse(m), in
// field-number order as proto.Marshal does.
func marshalResponse(buf []byte, m *rlsv3.RateLimitResponse) (int, error) {
	if !plain(m) {
		out, err := proto.MarshalOptions{}.MarshalAppend(buf[:0], m)
		if err != nil {
			return 0, err
		}
		if len(out) != len(buf) || (len(out) > 0 && &out[0] != &buf[0]) {
			return 0, errSize
		}
		return len(out), nil
	}
	b := buf[:0]
	if m.OverallCode != 0 {
		b = protowire.AppendVarint(append(b, 1<<3|0), uint64(int64(m.OverallCode)))
	}
	for _, s := range m.Statuses {
		b = protowire.AppendVarint(append(b, 2<<3|2), uint64(statusSize(s)))
		b = appendStatus(b, s)
	}
	for _, h := range m.ResponseHeadersToAdd {
		b = appendHeader(b, 3, h)
	}
	for _, h := range m.RequestHeadersToAdd {
		b = appendHeader(b, 4, h)
	}
	if len(m.RawBody) > 0 {
		b = protowire.AppendBytes(append(b, 5<<3|2), m.RawBody)
	}
	if len(b) != len(buf) || (len(b) > 0 && &b[0] != &buf[0]) {
		return 0, errSize
	}
	return len(b), nil
}

var errSize = errors.New("ratelimit: the answer's encoded size changed while it was written")

func sizeBytes(n int) int { return protowire.SizeVarint(uint64(n)) + n }

func statusSize(s *rlsv3.RateLimitResponse_DescriptorStatus) int {
	n := 0
	if s.Code != 0 {
		n += 1 + protowire.SizeVarint(uint64(int64(s.Code)))
	}
	if l := s.CurrentLimit; l != nil {
		n += 1 + sizeBytes(limitSize(l))
	}
	if s.LimitRemaining != 0 {
		n += 1 + protowire.SizeVarint(uint64(s.LimitRemaining))
	}
	if d := s.DurationUntilReset; d != nil {
		n += 1 + sizeBytes(durationSize(d.Seconds, d.Nanos))
	}
	return n
}

func appendStatus(b []byte, s *rlsv3.RateLimitResponse_DescriptorStatus) []byte {
	if s.Code != 0 {
		b = protowire.AppendVarint(append(b, 1<<3|0), uint64(int64(s.Code)))
	}
	if l := s.CurrentLimit; l != nil {
		b = protowire.AppendVarint(append(b, 2<<3|2), uint64(limitSize(l)))
		if l.RequestsPerUnit != 0 {
			b = protowire.AppendVarint(append(b, 1<<3|0), uint64(l.RequestsPerUnit))
		}
		if l.Unit != 0 {
			b = protowire.AppendVarint(append(b, 2<<3|0), uint64(int64(l.Unit)))
		}
		if l.Name != "" {
			b = protowire.AppendString(append(b, 3<<3|2), l.Name)
		}
	}
	if s.LimitRemaining != 0 {
		b = protowire.AppendVarint(append(b, 3<<3|0), uint64(s.LimitRemaining))
	}
	if d := s.DurationUntilReset; d != nil {
		b = protowire.AppendVarint(append(b, 4<<3|2), uint64(durationSize(d.Seconds, d.Nanos)))
		if d.Seconds != 0 {
			b = protowire.AppendVarint(append(b, 1<<3|0), uint64(d.Seconds))
		}
		if d.Nanos != 0 {
			b = protowire.AppendVarint(append(b, 2<<3|0), uint64(int64(d.Nanos)))
		}
	}
	return b
}

func limitSize(l *rlsv3.RateLimitResponse_RateLimit) int {
	n := 0
	if l.RequestsPerUnit != 0 {
		n += 1 + protowire.SizeVarint(uint64(l.RequestsPerUnit))
	}
	if l.Unit != 0 {
		n += 1 + protowire.SizeVarint(uint64(int64(l.Unit)))
	}
	if l.Name != "" {
		n += 1 + sizeBytes(len(l.Name))
	}
	return n
}

func durationSize(sec int64, nanos int32) int {
	n := 0
	if sec != 0 {
		n += 1 + protowire.SizeVarint(uint64(sec))
	}
	if nanos != 0 {
		n += 1 + protowire.SizeVarint(uint64(int64(nanos)))
	}
	return n
}

func headerSize(h *corev3.HeaderValue) int {
	n := 0
	if h.Key != "" {
		n += 1 + sizeBytes(len(h.Key))
	}
	if h.Value != "" {
		n += 1 + sizeBytes(len(h.Value))
	}
	if len(h.RawValue) > 0 {
		n += 1 + sizeBytes(len(h.RawValue))
	}
	return n
}

func appendHeader(b []byte, field protowire.Number, h *corev3.HeaderValue) []byte {
	b = protowire.AppendVarint(protowire.AppendTag(b, field, protowire.BytesType), uint64(headerSize(h)))
	if h.Key != "" {
		b = protowire.AppendString(append(b, 1<<3|2), h.Key)
	}
	if h.Value != "" {
		b = protowire.AppendString(append(b, 2<<3|2), h.Value)
	}
	if len(h.RawValue) > 0 {
		b = protowire.AppendBytes(append(b, 3<<3|2), h.RawValue)
	}
	return b
}
