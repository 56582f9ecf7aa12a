package config

// Authz configures the ext_authz server (envoy.service.auth.v3.Authorization).
type Authz struct {
	// Address is the gRPC listen address of the ext_authz server.
	Address string `yaml:"address" default:"127.0.0.1:9191"`
}

// RouteAuthz is a route's access policy.
type RouteAuthz struct{}

func (a *Authz) validate(p Path, c *Config, errs *Errors) {}

func (a *RouteAuthz) validate(p Path, c *Config, errs *Errors) {}

// AuthzNeeds says how Envoy's ext_authz filter treats route r.
func (r *Route) AuthzNeeds(c *Config) AuthzNeeds {
	return AuthzNeeds{Disabled: c.Authz == nil}
}
