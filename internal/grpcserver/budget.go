package grpcserver

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/semaphore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// budget bounds the request bytes a server holds at once
// (server.grpc.maxInflightBytes).
type budget struct {
	sem   *semaphore.Weighted
	gauge prometheus.Gauge
}

func newBudget(size int64, g prometheus.Gauge) *budget {
	return &budget{sem: semaphore.NewWeighted(size), gauge: g}
}

// acquire reserves n bytes, waiting for room until ctx's deadline. A
// request without a deadline says it would wait forever: it is refused at
// once rather than queued without bound.
func (b *budget) acquire(ctx context.Context, n int64) error {
	if n <= 0 {
		return nil
	}
	if b.sem.TryAcquire(n) {
		b.gauge.Add(float64(n))
		return nil
	}
	if _, ok := ctx.Deadline(); !ok {
		return errBusy
	}
	if err := b.sem.Acquire(ctx, n); err != nil {
		return status.FromContextError(err).Err()
	}
	b.gauge.Add(float64(n))
	return nil
}

func (b *budget) release(n int64) {
	if n > 0 {
		b.sem.Release(n)
		b.gauge.Sub(float64(n))
	}
}

var errBusy = status.Error(codes.ResourceExhausted, "gatehouse: the server holds as many request bytes as server.grpc.maxInflightBytes allows; retry")

// sizeOf is the decoded size of a request message, what it keeps of the
// budget while it is handled.
func sizeOf(m any) int64 {
	if vm, ok := m.(sizeVT); ok {
		return int64(vm.SizeVT())
	}
	if pm, ok := m.(proto.Message); ok {
		return int64(proto.Size(pm))
	}
	return 0
}

// badInput turns what gRPC answers for a request it could not read
// (Internal: a bad compressed payload, a wrong compression flag) into
// InvalidArgument: the caller sent it, and Internal would send an operator
// looking for a bug in gatehouse. Every other status passes unchanged.
func badInput(err error) error {
	if st, ok := status.FromError(err); ok && st.Code() == codes.Internal {
		return status.Error(codes.InvalidArgument, st.Message())
	}
	return err
}
