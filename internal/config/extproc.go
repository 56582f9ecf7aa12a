package config

// ExtProc configures the ext_proc server (envoy.service.ext_proc.v3.ExternalProcessor).
type ExtProc struct {
	// Address is the gRPC listen address of the ext_proc server.
	Address string `yaml:"address" default:"127.0.0.1:9192"`
}

// RouteExtProc selects the processors a route runs.
type RouteExtProc struct{}

func (e *ExtProc) validate(p Path, c *Config, errs *Errors) {}

func (e *RouteExtProc) validate(p Path, c *Config, errs *Errors) {}

// ExtProcNeeds says which parts of the exchange Envoy sends to ext_proc
// for route r.
func (r *Route) ExtProcNeeds(c *Config) ExtProcNeeds {
	return ExtProcNeeds{Disabled: c.ExtProc == nil || r.ExtProc == nil, RequestBody: BodyNone, ResponseBody: BodyNone}
}
