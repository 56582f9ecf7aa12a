package translate

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/contract"
)

// filterBudget is the ext_proc filter of cost budgets: after ext_authz
// (the caller's tier is known), the rate limit filters and the post_authz
// stage (a request they refuse or answer reserves nothing), before the
// router; on the way back it is the first to see the response, the
// upstream's own, which it reads as it passes to settle. It is not part
// of post_authz because it needs the response body streamed past, where
// redaction and idempotency need it buffered.
const filterBudget = contract.ExtProcBudgetFilterName

// budgetFilter is the budget filter, off unless a budget route turns it
// on. Its streams name their stage in gRPC metadata, and it forwards
// ext_authz's dynamic metadata (the verified tier and subject).
func budgetFilter(svc config.XDSServices) (*hcmv3.HttpFilter, error) {
	gs := grpcService(config.ComponentExtProc, svc.ExtProcMessageTimeout)
	gs.InitialMetadata = []*corev3.HeaderValue{{Key: contract.ExtProcStageMetadata, Value: contract.ExtProcStageBudget}}
	a, err := toAny(&extprocfilterv3.ExternalProcessor{
		GrpcService:      gs,
		FailureModeAllow: svc.ExtProcFailureMode == config.FailOpen,
		ProcessingMode: &extprocfilterv3.ProcessingMode{
			RequestHeaderMode:   extprocfilterv3.ProcessingMode_SKIP,
			ResponseHeaderMode:  extprocfilterv3.ProcessingMode_SKIP,
			RequestTrailerMode:  extprocfilterv3.ProcessingMode_SKIP,
			ResponseTrailerMode: extprocfilterv3.ProcessingMode_SKIP,
		},
		MessageTimeout:    durationpb.New(svc.ExtProcMessageTimeout.D()),
		RequestAttributes: []string{contract.ExtProcRouteAttribute},
		MetadataOptions: &extprocfilterv3.MetadataOptions{ForwardingNamespaces: &extprocfilterv3.MetadataOptions_MetadataNamespaces{
			Untyped: []string{contract.AuthzFilterName},
		}},
		// A route whose response cost is in a header tells Envoy to let
		// the body go by.
		AllowModeOverride: true,
		StatPrefix:        contract.ExtProcStageBudget,
	})
	if err != nil {
		return nil, err
	}
	return &hcmv3.HttpFilter{Name: filterBudget, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: a}, Disabled: true}, nil
}

// budgetPerRoute turns the budget filter on for a budget route, with the
// processing it needs: request headers (and the body when the estimate is
// in it), response headers, and the response body streamed when the cost
// is in it — chunks pass on as they come.
func budgetPerRoute(n *routeNeeds) (*anypb.Any, error) {
	return toAny(&extprocfilterv3.ExtProcPerRoute{Override: &extprocfilterv3.ExtProcPerRoute_Overrides{Overrides: &extprocfilterv3.ExtProcOverrides{
		ProcessingMode: &extprocfilterv3.ProcessingMode{
			RequestHeaderMode:   extprocfilterv3.ProcessingMode_SEND,
			ResponseHeaderMode:  extprocfilterv3.ProcessingMode_SEND,
			RequestBodyMode:     n.budget.RequestBody.Envoy(),
			ResponseBodyMode:    n.budget.ResponseBody.Envoy(),
			RequestTrailerMode:  extprocfilterv3.ProcessingMode_SKIP,
			ResponseTrailerMode: extprocfilterv3.ProcessingMode_SKIP,
		},
		RequestAttributes: []string{contract.ExtProcRouteAttribute},
	}}})
}
