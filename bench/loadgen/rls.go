package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
)

func runRLS(args []string) error {
	fs := flag.NewFlagSet("rls", flag.ExitOnError)
	var c common
	c.register(fs, "127.0.0.1:9193")
	domain := fs.String("domain", "gatehouse", "rate limit domain")
	route := fs.String("route", "", "value of a leading route entry (empty = none)")
	tier := fs.String("tier", "free", "value of the tier entry")
	tierKey := fs.String("tier-key", "tier", "descriptor key of the tier entry")
	subjectKey := fs.String("subject-key", "subject", "descriptor key of the subject entry")
	subjectPrefix := fs.String("subject-prefix", "user-", "prefix of generated subject values")
	keys := fs.Int("keys", 0, "distinct subjects (0 = the tier entry only)")
	hits := fs.Uint("hits", 1, "hits_addend per request")
	second := fs.String("second-key", "", "when set, a second descriptor per request: the first's entries with the tier entry's key replaced by this one")
	_ = fs.Parse(args)
	if err := c.check(); err != nil {
		return err
	}
	conns, err := c.dial()
	if err != nil {
		return err
	}
	clients := make([]rlsv3.RateLimitServiceClient, len(conns))
	for i, cc := range conns {
		defer cc.Close()
		clients[i] = rlsv3.NewRateLimitServiceClient(cc)
	}
	n := max(*keys, 1)
	reqs := make([]*rlsv3.RateLimitRequest, n)
	for i := range reqs {
		var entries []*ratelimitv3.RateLimitDescriptor_Entry
		if *route != "" {
			entries = append(entries, &ratelimitv3.RateLimitDescriptor_Entry{Key: "route", Value: *route})
		}
		entries = append(entries, &ratelimitv3.RateLimitDescriptor_Entry{Key: *tierKey, Value: *tier})
		if *keys > 0 {
			entries = append(entries, &ratelimitv3.RateLimitDescriptor_Entry{Key: *subjectKey, Value: fmt.Sprintf("%s%d", *subjectPrefix, i)})
		}
		descs := []*ratelimitv3.RateLimitDescriptor{{Entries: entries}}
		if *second != "" {
			entries2 := make([]*ratelimitv3.RateLimitDescriptor_Entry, len(entries))
			for j, e := range entries {
				entries2[j] = e
				if e.Key == *tierKey {
					entries2[j] = &ratelimitv3.RateLimitDescriptor_Entry{Key: *second, Value: e.Value}
				}
			}
			descs = append(descs, &ratelimitv3.RateLimitDescriptor{Entries: entries2})
		}
		reqs[i] = &rlsv3.RateLimitRequest{
			Domain:      *domain,
			Descriptors: descs,
			HitsAddend:  uint32(*hits),
		}
	}
	desc := fmt.Sprintf("rls domain=%s tier=%s keys=%d descriptors=%d", *domain, *tier, *keys, len(reqs[0].Descriptors))
	return c.run(desc, []string{"keys=" + fmt.Sprint(*keys)}, func(ctx context.Context, conn int, rng *rand.Rand) (string, error) {
		resp, err := clients[conn].ShouldRateLimit(ctx, reqs[rng.IntN(n)])
		if err != nil {
			return "", err
		}
		switch resp.GetOverallCode() {
		case rlsv3.RateLimitResponse_OK:
			return "ok", nil
		case rlsv3.RateLimitResponse_OVER_LIMIT:
			return "over", nil
		default:
			return "unknown", nil
		}
	})
}
