package config

// XDS configures the xDS control plane (ADS, State-of-the-World and Delta).
type XDS struct {
	// Address is the gRPC listen address of the ADS server.
	Address string `yaml:"address" default:"127.0.0.1:9194"`
}

// Listener is an Envoy listener served by the control plane.
type Listener struct {
	Name string `yaml:"name"`
}

// Cluster is an upstream cluster.
type Cluster struct {
	Name string `yaml:"name"`
}

// RouteAction is what a matched route does: send to a cluster, redirect or
// answer directly. It is written inline in Route.
type RouteAction struct {
	// Cluster is the name of the upstream cluster.
	Cluster string `yaml:"cluster,omitempty"`
}

func (x *XDS) validate(p Path, c *Config, errs *Errors) {}

func (l *Listener) validate(p Path, c *Config, errs *Errors) {}

func (cl *Cluster) validate(p Path, c *Config, errs *Errors) {}

func (a *RouteAction) validate(p Path, c *Config, errs *Errors) {}
