package config

import (
	"net"
	"regexp"
	"strconv"
	"strings"
)

// Validate checks everything that can be checked without I/O and returns
// every problem found (not only the first). Paths are filled in; Load adds
// file and line. Components add their own checks when they compile their
// part of the config.
func (c *Config) Validate() Errors {
	var errs Errors
	c.Server.validate("server", &errs)
	c.validateServing(&errs)
	if c.Redis != nil {
		c.Redis.validate("redis", &errs)
	}
	c.Audit.validate("audit", &errs)

	addrs := addressSet{}
	addrs.check(Path("server.admin.address"), c.Server.Admin.Address, &errs)
	if c.Authz != nil {
		addrs.check("authz.address", c.Authz.Address, &errs)
		c.Authz.validate("authz", c, &errs)
	}
	if c.ExtProc != nil {
		addrs.check("extproc.address", c.ExtProc.Address, &errs)
		c.ExtProc.validate("extproc", c, &errs)
	}
	if c.RateLimit != nil {
		addrs.check("ratelimit.address", c.RateLimit.Address, &errs)
		c.RateLimit.validate("ratelimit", &errs)
	}
	if c.XDS != nil {
		addrs.check("xds.address", c.XDS.Address, &errs)
		c.XDS.validate("xds", c, &errs)
	}
	for i := range c.Listeners {
		c.Listeners[i].validate(Path("listeners").Index(i), c, &errs)
	}
	for i := range c.Clusters {
		c.Clusters[i].validate(Path("clusters").Index(i), c, &errs)
	}

	ids := map[string]int{}
	for i := range c.Routes {
		r := &c.Routes[i]
		p := Path("routes").Index(i)
		r.validate(p, c, &errs)
		if r.ID == "" {
			continue
		}
		if first, dup := ids[r.ID]; dup {
			errs.Add(p.Field("id"), "duplicate route id %q (also routes[%d])", r.ID, first)
			continue
		}
		ids[r.ID] = i
	}
	return errs
}

// RouteByID returns the route with the given id, or nil.
func (c *Config) RouteByID(id string) *Route {
	for i := range c.Routes {
		if c.Routes[i].ID == id {
			return &c.Routes[i]
		}
	}
	return nil
}

func (s *Server) validate(p Path, errs *Errors) {
	g := p.Field("grpc")
	if s.GRPC.MaxRecvMessageSize < 1024 {
		errs.Add(g.Field("maxRecvMessageSize"), "%s is too small; use at least 1KiB", s.GRPC.MaxRecvMessageSize)
	}
	if s.GRPC.MaxSendMessageSize < 1024 {
		errs.Add(g.Field("maxSendMessageSize"), "%s is too small; use at least 1KiB", s.GRPC.MaxSendMessageSize)
	}
	if s.GRPC.MaxConcurrentStreams == 0 {
		errs.Add(g.Field("maxConcurrentStreams"), "must be at least 1")
	}
	k := g.Field("keepalive")
	if s.GRPC.Keepalive.Time.D() < 1e9 {
		errs.Add(k.Field("time"), "%s is too short; use at least 1s", s.GRPC.Keepalive.Time)
	}
	if s.GRPC.Keepalive.Timeout.D() < 1e9 {
		errs.Add(k.Field("timeout"), "%s is too short; use at least 1s", s.GRPC.Keepalive.Timeout)
	}
	if r := s.Tracing.SampleRatio; r < 0 || r > 1 {
		errs.Add(p.Field("tracing").Field("sampleRatio"), "%v is not between 0 and 1", r)
	}
	if e := s.Tracing.OTLPEndpoint; e != "" {
		if err := checkHostPort(e, false); err != "" {
			errs.Add(p.Field("tracing").Field("otlpEndpoint"), "%q %s", e, err)
		}
	}
	if s.ShutdownTimeout.D() <= 0 {
		errs.Add(p.Field("shutdownTimeout"), "must be more than 0s")
	}
}

func (r *Redis) validate(p Path, errs *Errors) {
	if len(r.Addresses) == 0 {
		errs.Add(p.Field("addresses"), "at least one host:port is required")
	}
	for i, a := range r.Addresses {
		if r.Network == RedisUnix {
			if a == "" {
				errs.Add(p.Field("addresses").Index(i), "is empty; with network unix, write the path of the server's socket")
			}
			continue
		}
		if err := checkHostPort(a, false); err != "" {
			errs.Add(p.Field("addresses").Index(i), "%q %s", a, err)
		}
	}
	if r.Network == RedisUnix && (r.Mode != RedisSingle || len(r.Addresses) > 1) {
		errs.Add(p.Field("network"), "unix reaches one server on its socket: use mode single and one address (mode is %s)", r.Mode)
	}
	switch r.Mode {
	case RedisSentinel:
		if r.MasterName == "" {
			errs.Add(p.Field("masterName"), "sentinel mode needs the name of the master set")
		}
	case RedisCluster:
		if r.DB != 0 {
			errs.Add(p.Field("db"), "Redis Cluster has only database 0")
		}
	}
	if r.Mode != RedisSentinel && r.MasterName != "" {
		errs.Add(p.Field("masterName"), "only used in sentinel mode (mode is %s)", r.Mode)
	}
	if r.DB < 0 {
		errs.Add(p.Field("db"), "must be 0 or more")
	}
	if r.PoolSize < 0 {
		errs.Add(p.Field("poolSize"), "must be 0 (the default) or more")
	}
	if r.DialTimeout.D() <= 0 || r.ReadTimeout.D() <= 0 || r.WriteTimeout.D() <= 0 {
		errs.Add(p, "dialTimeout, readTimeout and writeTimeout must be more than 0s: a Redis call must never wait forever")
	}
	if t := r.TLS; t != nil && (t.CertFile == "") != (t.KeyFile == "") {
		errs.Add(p.Field("tls"), "certFile and keyFile go together")
	}
}

var routeIDPattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,126}[a-z0-9])?$`)

func (r *Route) validate(p Path, c *Config, errs *Errors) {
	switch {
	case r.ID == "":
		errs.Add(p.Field("id"), "is required: every route has a stable id")
	case !routeIDPattern.MatchString(r.ID):
		errs.Add(p.Field("id"), "%q is not a route id; use 1-128 lower-case letters, digits, '.', '_' or '-', starting and ending with a letter or digit", r.ID)
	}
	r.Match.validate(p.Field("match"), errs)
	r.RouteAction.validate(p, c, errs)
	if r.Authz != nil {
		r.Authz.validate(p.Field("authz"), c, errs)
	}
	if r.RateLimit != nil {
		r.RateLimit.validate(p.Field("ratelimit"), c, errs)
	}
	if r.ExtProc != nil {
		r.ExtProc.validate(p.Field("extproc"), c, errs)
		r.ExtProc.validateGRPC(p.Field("extproc"), r, c, errs)
	}
	if r.Budget != nil {
		r.Budget.validate(p.Field("budget"), r, c, errs)
	}
}

var httpToken = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

func (m *Match) validate(p Path, errs *Errors) {
	set := 0
	for _, s := range []string{m.Prefix, m.Path, m.Regex.String()} {
		if s != "" {
			set++
		}
	}
	if set > 1 {
		errs.Add(p, "set only one of prefix, path and regex")
	}
	if m.Prefix != "" && !strings.HasPrefix(m.Prefix, "/") {
		errs.Add(p.Field("prefix"), "%q must start with /", m.Prefix)
	}
	if m.Path != "" && !strings.HasPrefix(m.Path, "/") {
		errs.Add(p.Field("path"), "%q must start with /", m.Path)
	}
	for i, h := range m.Hosts {
		if msg := checkHostPattern(h); msg != "" {
			errs.Add(p.Field("hosts").Index(i), "%q %s", h, msg)
		}
	}
	for i, meth := range m.Methods {
		if !httpToken.MatchString(meth) || strings.ToUpper(meth) != meth {
			errs.Add(p.Field("methods").Index(i), "%q is not an HTTP method; write it upper-case, e.g. GET", meth)
		}
	}
	for i, h := range m.Headers {
		hp := p.Field("headers").Index(i)
		if !httpToken.MatchString(strings.TrimPrefix(h.Name, ":")) {
			errs.Add(hp.Field("name"), "%q is not a header name", h.Name)
		}
		checkOneMatcher(hp, h.Exact, h.Prefix, h.Regex, h.Present, errs)
	}
	for i, q := range m.Query {
		qp := p.Field("query").Index(i)
		if q.Name == "" {
			errs.Add(qp.Field("name"), "is required")
		}
		checkOneMatcher(qp, q.Exact, q.Prefix, q.Regex, q.Present, errs)
	}
}

func checkOneMatcher(p Path, exact, prefix string, re Regex, present *bool, errs *Errors) {
	n := 0
	for _, s := range []string{exact, prefix, re.String()} {
		if s != "" {
			n++
		}
	}
	if present != nil {
		n++
	}
	if n != 1 {
		errs.Add(p, "set exactly one of exact, prefix, regex and present")
	}
}

// checkHostPattern accepts what Envoy accepts in virtual_hosts.domains:
// "*", "*.example.com", "*-suffix.example.com", "example.*" and
// "example.com", lower-case and without a port.
func checkHostPattern(h string) string {
	if h == "" {
		return "is empty"
	}
	if h == "*" {
		return ""
	}
	if strings.Count(h, "*") > 1 {
		return "may hold one wildcard, at the start or the end"
	}
	if i := strings.Index(h, "*"); i > 0 && i < len(h)-1 {
		return "may hold a wildcard only at the start or the end"
	}
	for _, r := range h {
		if r == ':' {
			return "has a port; ports are stripped before matching (Envoy's strip_any_host_port), so list the host alone"
		}
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || strings.ContainsRune(".-*_", r)) {
			return "is not a lower-case host name"
		}
	}
	return ""
}

// checkHostPort returns "" when s is host:port with a valid port, or what
// is wrong with it. allowZero admits port 0 (an ephemeral port, for tests).
func checkHostPort(s string, allowZero bool) string {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "is not host:port"
	}
	_ = host
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 || (n == 0 && !allowZero) {
		return "has no valid port (1-65535)"
	}
	return ""
}

// addressSet finds two servers configured on the same address, which would
// otherwise surface only as "address already in use" at start.
type addressSet map[string]Path

func (a addressSet) check(p Path, addr string, errs *Errors) {
	if msg := checkHostPort(addr, true); msg != "" {
		errs.Add(p, "%q %s", addr, msg)
		return
	}
	if strings.HasSuffix(addr, ":0") {
		return
	}
	if other, ok := a[addr]; ok {
		errs.Add(p, "%q is also the address of %s", addr, other)
		return
	}
	a[addr] = p
}
