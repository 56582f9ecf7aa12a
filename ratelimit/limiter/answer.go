package limiter

import (
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/protobuf/types/known/durationpb"
)

// answer holds a response and everything it points to in one allocation
// for the common requests of up to inlineDescs descriptors. It is the
// largest allocation of a request (about 1 KiB): the gRPC handler gives it
// back to a pool once the response is written (Answer.Release).
type answer struct {
	resp     rlsv3.RateLimitResponse
	statuses [inlineDescs]rlsv3.RateLimitResponse_DescriptorStatus
	ptrs     [inlineDescs]*rlsv3.RateLimitResponse_DescriptorStatus
	durs     [inlineDescs]durationpb.Duration
	hdrs     [maxHeaders]corev3.HeaderValue
	hptrs    [maxHeaders]*corev3.HeaderValue
	durSlice []durationpb.Duration
}

const (
	inlineDescs = 2
	maxHeaders  = 6
)

var answerPool = sync.Pool{New: func() any { return new(answer) }}

func newAnswer(n int) *answer {
	a := answerPool.Get().(*answer)
	if n <= inlineDescs {
		for i := 0; i < n; i++ {
			a.ptrs[i] = &a.statuses[i]
		}
		a.resp.Statuses = a.ptrs[:n:n]
		return a
	}
	sts := make([]rlsv3.RateLimitResponse_DescriptorStatus, n)
	a.resp.Statuses = make([]*rlsv3.RateLimitResponse_DescriptorStatus, n)
	for i := range sts {
		a.resp.Statuses[i] = &sts[i]
	}
	a.durSlice = make([]durationpb.Duration, n)
	return a
}

// duration sets status i's duration_until_reset to us microseconds
// rounded up to whole seconds, and returns it. The reference sends whole
// seconds (unit − now % unit, rounded up), and Envoy's reset header shows
// the seconds: the exact remainder would read one second short.
func (a *answer) duration(i int, us int64) *durationpb.Duration {
	var d *durationpb.Duration
	if a.durSlice != nil {
		d = &a.durSlice[i]
	} else {
		d = &a.durs[i]
	}
	d.Seconds, d.Nanos = (max(us, 0)+999_999)/1e6, 0
	return d
}

// Answer is a decision whose memory is pooled: Response is valid until
// Release, after which neither it nor anything it points to may be read.
type Answer answer

// Response is the answer's message.
func (a *Answer) Response() *rlsv3.RateLimitResponse { return &a.resp }

// Release gives the answer's memory back for another request: once its
// response has been written, and no more than once.
func (a *Answer) Release() {
	*a = Answer{}
	answerPool.Put((*answer)(a))
}
