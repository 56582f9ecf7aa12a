package limiter

import (
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// check bounds the request before any work is done for it.
func (l *Limiter) check(st *state, req *rlsv3.RateLimitRequest) error {
	s := st.settings
	bad := func(reason, format string, args ...any) error {
		l.m.invalid.WithLabelValues(reason).Inc()
		return status.Errorf(codes.InvalidArgument, "ratelimit: "+format, args...)
	}
	if req.GetDomain() == "" {
		return bad("empty_domain", "domain is empty")
	}
	if len(req.GetDomain()) > s.MaxValueBytes {
		return bad("too_large", "domain is %d bytes; at most %d", len(req.GetDomain()), s.MaxValueBytes)
	}
	descs := req.GetDescriptors()
	if len(descs) == 0 {
		return bad("no_descriptors", "the request has no descriptors")
	}
	if len(descs) > s.MaxDescriptors {
		return bad("too_large", "the request has %d descriptors; at most %d (ratelimit.requests.maxDescriptors)", len(descs), s.MaxDescriptors)
	}
	if uint64(req.GetHitsAddend()) > s.MaxHits {
		return bad("bad_hits", "hits_addend %d is more than %d (ratelimit.requests.maxHits)", req.GetHitsAddend(), s.MaxHits)
	}
	for i, d := range descs {
		if d == nil {
			return bad("bad_descriptor", "descriptors[%d] is null", i)
		}
		es := d.GetEntries()
		if len(es) > s.MaxEntries {
			return bad("too_large", "descriptors[%d] has %d entries; at most %d (ratelimit.requests.maxEntries)", i, len(es), s.MaxEntries)
		}
		for j, e := range es {
			if e == nil {
				return bad("bad_descriptor", "descriptors[%d].entries[%d] is null", i, j)
			}
			if len(e.GetKey()) > s.MaxValueBytes || len(e.GetValue()) > s.MaxValueBytes {
				return bad("too_large", "descriptors[%d].entries[%d] is longer than %d bytes (ratelimit.requests.maxValueBytes)", i, j, s.MaxValueBytes)
			}
		}
		if h := d.GetHitsAddend(); h != nil && h.GetValue() > s.MaxHits {
			return bad("bad_hits", "descriptors[%d].hits_addend %d is more than %d (ratelimit.requests.maxHits)", i, h.GetValue(), s.MaxHits)
		}
	}
	return nil
}

// hitsOf is the descriptor's hits: its own hits_addend when set (0 looks
// without counting), else the request's, else 1 — as envoyproxy/ratelimit.
func hitsOf(req *rlsv3.RateLimitRequest, d *ratelimitv3.RateLimitDescriptor) uint64 {
	if h := d.GetHitsAddend(); h != nil {
		return h.GetValue()
	}
	return uint64(max(1, req.GetHitsAddend()))
}
