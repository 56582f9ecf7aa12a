package config

// RateLimit configures the rate limit server (envoy.service.ratelimit.v3.RateLimitService).
type RateLimit struct {
	// Address is the gRPC listen address of the rate limit server.
	Address string `yaml:"address" default:"127.0.0.1:9193"`
}

// RouteRateLimit is a route's per-tier quota.
type RouteRateLimit struct{}

func (r *RateLimit) validate(p Path, c *Config, errs *Errors) {}

func (r *RouteRateLimit) validate(p Path, c *Config, errs *Errors) {}

// RateLimitNeeds says which rate limit descriptor Envoy sends for route r.
func (r *Route) RateLimitNeeds(c *Config) RateLimitNeeds {
	return RateLimitNeeds{Enabled: c.RateLimit != nil && r.RateLimit != nil}
}
