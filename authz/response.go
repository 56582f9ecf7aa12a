package authz

import (
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/gatehouse/gatehouse/authz/internal/core"
	"github.com/gatehouse/gatehouse/internal/contract"
)

var (
	statusOK               = &rpcstatus.Status{Code: int32(codes.OK)}
	statusPermissionDenied = &rpcstatus.Status{Code: int32(codes.PermissionDenied)}
	statusUnauthenticated  = &rpcstatus.Status{Code: int32(codes.Unauthenticated)}
)

// set builds an upstream header that replaces any client-sent copy.
func set(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: k, Value: v},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

// respond turns a decision into Envoy's CheckResponse.
// wire selects allowedWire for an allowed response: Check serves it;
// Explain, which shows the metadata, does not.
func (e *engine) respond(d *decision, decisionID, reqID string, wire bool) *authv3.CheckResponse {
	if d.outcome == deny {
		return e.denied(d, decisionID, reqID)
	}
	if wire {
		return allowedWire(e.upstreamFor(d), decisionID)
	}
	return e.allowed(d, decisionID)
}

// upstream is what an allowed response carries for one identity on one
// route: built once, then shared (read only) by every Check of the same
// cached token or API key on that route.
type upstream struct {
	tier    string
	headers []*corev3.HeaderValueOption
	remove  []string
	fields  map[string]*structpb.Value // dynamic metadata, less the decision id
	// wireFields is fields encoded as google.protobuf.Struct map entries,
	// wireOK the OkHttpResponse's headers and headers_to_remove encoded
	// (see allowedWire).
	wireFields []byte
	wireOK     []byte
}

// upstreamFor returns the identity's upstream output for the route,
// building and keeping it on first use.
func (e *engine) upstreamFor(d *decision) *upstream {
	rt, id := d.route, d.identity
	if id == nil {
		if u := rt.anon.Load(); u != nil && u.tier == d.tier {
			return u
		}
		u := e.buildUpstream(rt, nil, d.tier)
		rt.anon.Store(u)
		return u
	}
	if p := id.Derived.Load(); p != nil && p.Route == rt {
		if u := p.Value.(*upstream); u.tier == d.tier {
			return u
		}
	}
	u := e.buildUpstream(rt, id, d.tier)
	id.Derived.Store(&core.Derived{Route: rt, Value: u})
	return u
}

// buildUpstream: identity headers overwrite client copies, every identity
// header not set is removed (a client can never choose its own), the
// route's credential headers are stripped, and the identity goes to
// dynamic metadata for the rate limit actions and access logs.
func (e *engine) buildUpstream(rt *route, id *core.Identity, tier string) *upstream {
	method := contract.AuthMethodNone
	var subject, issuer, spiffe, scopes string
	if id != nil {
		method, subject, issuer, spiffe = id.Method, id.Subject, id.Issuer, id.SPIFFEID
		scopes = strings.Join(id.Scopes, " ")
	}
	u := &upstream{tier: tier, fields: make(map[string]*structpb.Value, 8)}
	add := func(k, v string) {
		if v == "" {
			u.remove = append(u.remove, k)
			return
		}
		u.headers = append(u.headers, set(k, v))
	}
	add(contract.HeaderSubject, subject)
	add(contract.HeaderTier, tier)
	add(contract.HeaderIssuer, issuer)
	add(contract.HeaderAuthMethod, method)
	add(contract.HeaderSPIFFEID, spiffe)
	add(contract.HeaderScopes, scopes)
	add(contract.HeaderRoute, rt.id)
	for _, ch := range rt.claimHeaders {
		v := ""
		if id != nil && id.Claims != nil {
			if raw, ok := lookupClaim(id.Claims, strings.Split(ch.Claim, ".")); ok {
				if s, ok := claimString(raw); ok && contract.HeaderSafe(s) {
					v = s
				}
			}
		}
		add(ch.Header, v)
	}
	// The decision id goes to the client only; a copy the client sent
	// must not reach the upstream as if gatehouse had set it.
	u.remove = append(u.remove, contract.HeaderDecisionID)
	u.remove = append(u.remove, rt.strip...)
	meta := func(k, v string) {
		if v != "" {
			u.fields[k] = structpb.NewStringValue(v)
		}
	}
	meta(contract.MetaTier, tier)
	meta(contract.MetaAuthMethod, method)
	meta(contract.MetaRoute, rt.id)
	meta(contract.MetaSubject, subject)
	meta(contract.MetaIssuer, issuer)
	meta(contract.MetaSPIFFEID, spiffe)
	meta(contract.MetaScopes, scopes)
	ok, err := proto.Marshal(&authv3.OkHttpResponse{Headers: u.headers, HeadersToRemove: u.remove})
	if err != nil {
		panic(err) // impossible: only valid strings and enums
	}
	u.wireOK = ok
	for _, k := range []string{contract.MetaTier, contract.MetaAuthMethod, contract.MetaRoute, contract.MetaSubject,
		contract.MetaIssuer, contract.MetaSPIFFEID, contract.MetaScopes} {
		if v, ok := u.fields[k]; ok {
			u.wireFields = appendStructEntry(u.wireFields, k, v.GetStringValue())
		}
	}
	return u
}

// allowed answers OK with the identity's upstream output, and the
// decision id for the client and the access log.
func (e *engine) allowed(d *decision, decisionID string) *authv3.CheckResponse {
	u := e.upstreamFor(d)
	fields := make(map[string]*structpb.Value, len(u.fields)+1)
	for k, v := range u.fields {
		fields[k] = v
	}
	fields[contract.MetaDecisionID] = structpb.NewStringValue(decisionID)
	return &authv3.CheckResponse{
		Status: statusOK,
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers:              u.headers,
			HeadersToRemove:      u.remove,
			ResponseHeadersToAdd: []*corev3.HeaderValueOption{set(contract.HeaderDecisionID, decisionID)},
		}},
		DynamicMetadata: &structpb.Struct{Fields: fields},
	}
}

// allowedWire is allowed with the response already encoded.
//
// Why: a CPU profile of serve under load showed encoding the response
// costing more than deciding it — the google.protobuf.Struct map of the
// dynamic metadata alone about as much as decoding the whole
// CheckRequest, the header options most of the rest — although all of it
// but the decision id is the same for every Check of one identity on one
// route. So the OkHttpResponse (headers, headers_to_remove) and the
// identity's metadata entries are encoded once per identity and route
// (upstream.wireOK, upstream.wireFields); per Check only the decision id
// (response header and metadata entry) is encoded, and the two fields are
// attached in wire form: as unknown fields of the message built here,
// which proto.Marshal copies verbatim. On the wire the response is the
// same as allowed's; TestWireMetadata decodes both and compares them.
func allowedWire(u *upstream, decisionID string) *authv3.CheckResponse {
	resp := &authv3.CheckResponse{Status: statusOK}
	idHeader := decisionHeaderWire(decisionID)
	okLen := len(u.wireOK) + protowire.SizeTag(fieldResponseHeadersToAdd) + protowire.SizeBytes(len(idHeader))
	stLen := len(u.wireFields) + structEntrySize(contract.MetaDecisionID, decisionID)
	raw := make([]byte, 0, protowire.SizeTag(fieldOkResponse)+protowire.SizeBytes(okLen)+protowire.SizeTag(fieldDynamicMetadata)+protowire.SizeBytes(stLen))
	raw = protowire.AppendTag(raw, fieldOkResponse, protowire.BytesType)
	raw = protowire.AppendVarint(raw, uint64(okLen))
	raw = append(raw, u.wireOK...)
	raw = protowire.AppendTag(raw, fieldResponseHeadersToAdd, protowire.BytesType)
	raw = protowire.AppendBytes(raw, idHeader)
	raw = protowire.AppendTag(raw, fieldDynamicMetadata, protowire.BytesType)
	raw = protowire.AppendVarint(raw, uint64(stLen))
	raw = append(raw, u.wireFields...)
	raw = appendStructEntry(raw, contract.MetaDecisionID, decisionID)
	resp.ProtoReflect().SetUnknown(protoreflect.RawFields(raw))
	return resp
}

// Field numbers of the encoded parts, read from the descriptors so that
// they cannot be mistyped.
var (
	fieldOkResponse           = fieldNumber(&authv3.CheckResponse{}, "ok_response")
	fieldDynamicMetadata      = fieldNumber(&authv3.CheckResponse{}, "dynamic_metadata")
	fieldResponseHeadersToAdd = fieldNumber(&authv3.OkHttpResponse{}, "response_headers_to_add")
	hvoHeader                 = fieldNumber(&corev3.HeaderValueOption{}, "header")
	hvoAppend                 = fieldNumber(&corev3.HeaderValueOption{}, "append_action")
	headerKey                 = fieldNumber(&corev3.HeaderValue{}, "key")
	headerValue               = fieldNumber(&corev3.HeaderValue{}, "value")
	overwriteOrAdd            = uint64(corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD)
)

func fieldNumber(m proto.Message, name protoreflect.Name) protowire.Number {
	return m.ProtoReflect().Descriptor().Fields().ByName(name).Number()
}

// decisionHeaderWire encodes set(contract.HeaderDecisionID, id).
func decisionHeaderWire(id string) []byte {
	hvLen := protowire.SizeTag(headerKey) + protowire.SizeBytes(len(contract.HeaderDecisionID)) +
		protowire.SizeTag(headerValue) + protowire.SizeBytes(len(id))
	b := make([]byte, 0, hvLen+16)
	b = protowire.AppendTag(b, hvoHeader, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(hvLen))
	b = protowire.AppendTag(b, headerKey, protowire.BytesType)
	b = protowire.AppendString(b, contract.HeaderDecisionID)
	b = protowire.AppendTag(b, headerValue, protowire.BytesType)
	b = protowire.AppendString(b, id)
	b = protowire.AppendTag(b, hvoAppend, protowire.VarintType)
	return protowire.AppendVarint(b, overwriteOrAdd)
}

func structEntrySize(key, val string) int {
	valueLen := protowire.SizeTag(3) + protowire.SizeBytes(len(val))
	entryLen := protowire.SizeTag(1) + protowire.SizeBytes(len(key)) + protowire.SizeTag(2) + protowire.SizeBytes(valueLen)
	return protowire.SizeTag(1) + protowire.SizeBytes(entryLen)
}

// appendStructEntry appends one google.protobuf.Struct fields entry
// (map<string, Value>, field 1) with a string Value (field 3).
func appendStructEntry(b []byte, key, val string) []byte {
	valueLen := protowire.SizeTag(3) + protowire.SizeBytes(len(val))
	entryLen := protowire.SizeTag(1) + protowire.SizeBytes(len(key)) + protowire.SizeTag(2) + protowire.SizeBytes(valueLen)
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(entryLen))
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, key)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(valueLen))
	b = protowire.AppendTag(b, 3, protowire.BytesType)
	return protowire.AppendString(b, val)
}

// denied: the status of the reason code, a WWW-Authenticate challenge on
// 401 (and on 403 insufficient_scope), and a small JSON body that names
// the public reason only.
func (e *engine) denied(d *decision, decisionID, reqID string) *authv3.CheckResponse {
	info := d.code.Info()
	st := statusPermissionDenied
	if info.Status == 401 {
		st = statusUnauthenticated
	}
	headers := []*corev3.HeaderValueOption{
		set("content-type", "application/json"),
		set("cache-control", "no-store"),
		set(contract.HeaderDecisionID, decisionID),
	}
	if ch := e.challenge(d); ch != "" {
		headers = append(headers, set("www-authenticate", ch))
	}
	return &authv3.CheckResponse{
		Status: st,
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(info.Status)},
			Headers: headers,
			Body:    denyBody(info, reqID),
		}},
		DynamicMetadata: &structpb.Struct{Fields: map[string]*structpb.Value{
			contract.MetaDecisionID: structpb.NewStringValue(decisionID),
			contract.MetaRoute:      structpb.NewStringValue(d.route.id),
		}},
	}
}

// challenge builds WWW-Authenticate for a denial: one challenge per method
// the route accepts (RFC 7235), the Bearer one carrying the RFC 6750
// error code when a token was presented. A 401 always has one.
func (e *engine) challenge(d *decision) string {
	info := d.code.Info()
	rt := d.route
	if info.Status != 401 && d.code != core.ScopeMissing {
		return ""
	}
	realm := `realm="` + e.realm + `"`
	var parts []string
	if rt.bearer {
		b := "Bearer " + realm
		if info.BearerError != "" && (d.failed == contract.AuthMethodJWT || d.code == core.ScopeMissing) {
			b += `, error="` + info.BearerError + `"`
			if d.code == core.ScopeMissing && rt.scopesJoined != "" {
				b += `, scope="` + rt.scopesJoined + `"`
			}
		}
		parts = append(parts, b)
	}
	if rt.apiKey {
		parts = append(parts, "APIKey "+realm)
	}
	if rt.signature {
		parts = append(parts, "Signature "+realm)
	}
	if len(parts) == 0 && info.Status == 401 {
		parts = append(parts, "Bearer "+realm)
	}
	return strings.Join(parts, ", ")
}

// denyBody renders {"error":…,"reason":…,"request_id":…}. The request id
// was checked to need no escaping (requestID).
func denyBody(info core.Info, reqID string) string {
	var b strings.Builder
	b.Grow(96 + len(reqID))
	b.WriteString(`{"error":"`)
	b.WriteString(statusWord(info.Status))
	b.WriteString(`","reason":"`)
	b.WriteString(info.Public)
	b.WriteString(`","request_id":"`)
	b.WriteString(reqID)
	b.WriteString(`"}`)
	return b.String()
}

func statusWord(s int) string {
	switch s {
	case 400:
		return "bad_request"
	case 401:
		return "unauthorized"
	case 403:
		return "forbidden"
	case 409:
		return "conflict"
	case 413:
		return "payload_too_large"
	case 503:
		return "unavailable"
	}
	return "internal_error"
}
