package extproc

import (
	"context"
	"fmt"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/contract"
)

// streamStage reads which of gatehouse's ext_proc filters opened the
// stream (contract.ExtProcStageMetadata, set by xds on each filter's
// grpc_service). A stream without it is served as one filter running
// every processor: a hand-written Envoy config, or a proxyless gRPC
// client. An unknown stage is refused rather than guessed: running the
// contract check before ext_authz, say, is what the stages exist to
// prevent.
func streamStage(ctx context.Context) (config.ExtProcStage, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vs := md.Get(contract.ExtProcStageMetadata)
	switch {
	case len(vs) == 0:
		return config.ExtProcStageAll, nil
	case len(vs) > 1:
		return "", fmt.Errorf("extproc: %d values of %s; want one", len(vs), contract.ExtProcStageMetadata)
	}
	for _, st := range config.ExtProcStages {
		if vs[0] == string(st) {
			return st, nil
		}
	}
	return "", fmt.Errorf("extproc: unknown stage %q in %s; want %s or %s", vs[0], contract.ExtProcStageMetadata, config.ExtProcStagePreAuthz, config.ExtProcStagePostAuthz)
}

// streamRouteID is the route id a proxyless gRPC client sends in its
// ext_proc stream's metadata (xds puts it in the route's grpc_service
// override: the client does not implement xds.route_name), or "".
func streamRouteID(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	if vs := md.Get(contract.ExtProcRouteMetadata); len(vs) == 1 {
		return vs[0]
	}
	return ""
}

// stageStreams is the counter of the streams a stage opens.
func (m *metrics) stageStreams(st config.ExtProcStage) prometheus.Counter {
	if st == config.ExtProcStageAll {
		return m.stages.WithLabelValues("all")
	}
	return m.stages.WithLabelValues(string(st))
}

// stageViews builds the views of r that each stage runs: the
// processors of config.RouteExtProc.ForStage, with that stage's needs.
func (r *route) stageViews(cr *config.Route, cfg *config.Config) {
	pre := &route{id: r.id, m: r.m, limit: r.limit, reject: r.reject, json: r.json, needs: cr.ExtProcStageNeeds(cfg, config.ExtProcStagePreAuthz),
		hygiene: r.hygiene, security: r.security}
	post := &route{id: r.id, m: r.m, limit: r.limit, reject: r.reject, json: r.json, needs: cr.ExtProcStageNeeds(cfg, config.ExtProcStagePostAuthz),
		contract: r.contract, oaBody: r.oaBody, oaResp: r.oaResp, redactor: r.redactor, idem: r.idem,
		// The answers the second stage makes itself (a 400 for the
		// contract, a replay) carry the request's ids and the security
		// headers too; the first stage set the ids on the request.
		correlate: r.hygiene != nil, security: r.security}
	r.pre, r.post = pre, post
}

// forStage is the view of r that stage st runs.
func (r *route) forStage(st config.ExtProcStage) *route {
	switch {
	case st == config.ExtProcStagePreAuthz && r.pre != nil:
		return r.pre
	case st == config.ExtProcStagePostAuthz && r.post != nil:
		return r.post
	}
	return r
}

// identity is the caller ext_authz verified, as the second stage reads it
// from ext_authz's dynamic metadata (forwarded by the filter's
// metadata_options).
type identity struct {
	subject, issuer, method string
}

// verified reports whether ext_authz identified the caller.
func (id identity) verified() bool {
	return id.subject != "" && id.method != "" && id.method != contract.AuthMethodNone
}

func identityOf(req *extprocv3.ProcessingRequest) identity {
	f := req.GetMetadataContext().GetFilterMetadata()[contract.AuthzFilterName].GetFields()
	if f == nil {
		return identity{}
	}
	str := func(k string) string { return f[k].GetStringValue() }
	return identity{subject: str(contract.MetaSubject), issuer: str(contract.MetaIssuer), method: str(contract.MetaAuthMethod)}
}

// requestAttribute finds a request attribute Envoy (or a gRPC client) sent.
// Envoy files attributes under its ext_proc extension's name; every
// namespace is searched so that a filter renamed in a hand-written config
// still carries its route.
func requestAttribute(attrs map[string]*structpb.Struct, name string) string {
	if v := attrs[contract.ExtProcFilterName].GetFields()[name].GetStringValue(); v != "" {
		return v
	}
	for _, s := range attrs {
		if v := s.GetFields()[name].GetStringValue(); v != "" {
			return v
		}
	}
	return ""
}
