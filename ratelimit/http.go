package ratelimit

import (
	"context"
	"io"
	"net/http"
	"strings"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/protobuf/encoding/protojson"
)

// maxJSONBody bounds a /json request: an RLS request is small, and the
// limiter bounds what one may hold anyway.
const maxJSONBody = 1 << 20

// JSONHandler is envoyproxy/ratelimit's HTTP /json endpoint: a
// RateLimitRequest in protobuf JSON, answered with the RateLimitResponse
// in JSON; 429 when it is OVER_LIMIT, 400 for a request that does not
// decode or is refused, as the reference answers.
func (s *Server) JSONHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, maxJSONBody+1))
		if err != nil || len(body) > maxJSONBody {
			http.Error(w, http.StatusText(http.StatusBadRequest), http.StatusBadRequest)
			return
		}
		var req rlsv3.RateLimitRequest
		if err := protojson.Unmarshal(body, &req); err != nil {
			http.Error(w, http.StatusText(http.StatusBadRequest), http.StatusBadRequest)
			return
		}
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		resp, err := s.ShouldRateLimit(ctx, &req)
		if err != nil {
			http.Error(w, http.StatusText(http.StatusBadRequest), http.StatusBadRequest)
			return
		}
		out, err := protojson.Marshal(resp)
		if err != nil {
			http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		switch resp.GetOverallCode() {
		case rlsv3.RateLimitResponse_OVER_LIMIT:
			w.WriteHeader(http.StatusTooManyRequests)
		case rlsv3.RateLimitResponse_UNKNOWN:
			w.WriteHeader(http.StatusInternalServerError)
		}
		_, _ = w.Write(out)
	})
}

// AdminRoutes implements component.AdminRoutes: /rlconfig prints the
// envoy config rules being served, one line per rule in the reference's
// debug format (sorted, where the reference's order varies).
func (s *Server) AdminRoutes() map[string]http.Handler {
	return map[string]http.Handler{
		"GET /rlconfig": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			if snap := s.lim.Snapshot(); snap != nil {
				_, _ = io.WriteString(w, strings.Join(snap.DumpEnvoy(), ""))
			}
		}),
	}
}

// Domains is how many domains the served config declares.
func (s *Server) Domains() int {
	if snap := s.lim.Snapshot(); snap != nil {
		return len(snap.DomainNames())
	}
	return 0
}
