package config

// RecvLimits says how each gRPC server's receive limit is chosen.
type RecvLimits string

// Receive limit modes.
const (
	// RecvLimitsDerived gives each server what a valid request to it can
	// be (ReceiveLimit), at most server.grpc.maxRecvMessageSize.
	RecvLimitsDerived RecvLimits = "derived"
	// RecvLimitsMax gives every server server.grpc.maxRecvMessageSize,
	// for hand-written Envoy configs that send more than gatehouse's own
	// config would (a body to ext_authz that no webhook verifies).
	RecvLimitsMax RecvLimits = "max"
)

// EnumValues implements Enum.
func (RecvLimits) EnumValues() []string { return []string{"derived", "max"} }

// EnumNoun implements Enum.
func (RecvLimits) EnumNoun() string { return "a receive limit mode" }

// recvSlack covers what a request carries beside its headers and body: the
// peer certificate ext_authz forwards, metadata, attributes, and the
// protobuf framing of every header.
const recvSlack = 64 << 10

// envoyDefaultHeadersKB is Envoy's own max_request_headers_kb, for the
// Envoys gatehouse does not configure.
const envoyDefaultHeadersKB = 60

// ReceiveLimit is the largest request message the named server accepts.
// Derived, it is what a valid request can be: Envoy's request header limit
// (the largest of the listeners', else Envoy's default) twice over (the
// path and host come again as attributes, and RLS descriptor values come
// from headers), the body the component asks Envoy to send (webhook
// bodies for ext_authz, the largest processed body for ext_proc), and
// 64 KiB for the rest. ADS requests list resource names and versions and
// grow with the mesh, so xds always gets the maximum.
func (c *Config) ReceiveLimit(server string) int64 {
	ceiling := int64(c.Server.GRPC.MaxRecvMessageSize)
	if c.Server.GRPC.RecvLimits == RecvLimitsMax {
		return ceiling
	}
	kb := uint32(0)
	for i := range c.Listeners {
		kb = max(kb, c.Listeners[i].MaxRequestHeadersKB)
	}
	if kb == 0 {
		kb = envoyDefaultHeadersKB
	}
	headers := 2*int64(kb)<<10 + recvSlack
	var need int64
	switch server {
	case ComponentAuthz:
		need = headers
		if c.Authz != nil {
			for _, w := range c.Authz.Webhooks {
				if w.Scheme.SignsBody() {
					need = max(need, headers+int64(w.MaxBodySize))
				}
			}
		}
	case ComponentExtProc:
		need = headers
		if c.ExtProc != nil {
			body := int64(c.ExtProc.MaxBodySize)
			for i := range c.Routes {
				if e := c.Routes[i].ExtProc; e.HasProcessors() {
					body = max(body, e.BodyLimit(c))
				}
			}
			need = max(need, body+recvSlack)
		}
	case ComponentRateLimit:
		need = headers
	default:
		return ceiling
	}
	return min(need, ceiling)
}
