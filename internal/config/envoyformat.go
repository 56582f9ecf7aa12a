package config

import (
	"fmt"
	"regexp"
)

// Envoy's header values are substitution format strings: literal text and
// %COMMAND%, %COMMAND(ARGS)% or %COMMAND(ARGS):LENGTH% operators, with %%
// for a literal percent sign. Envoy refuses a route configuration holding
// a command it does not know, or one given arguments it does not take, so
// gatehouse checks them first (Envoy's own validation found values that
// passed gatehouse's).

// envoyCommandArgs says whether a command takes arguments.
type envoyCommandArgs uint8

const (
	argsNone     envoyCommandArgs = iota // %NAME% only: no arguments, no length
	argsOptional                         // %NAME% or %NAME(ARGS)%
	argsRequired                         // %NAME(ARGS)% only
)

// envoyCommands are the format commands of Envoy 1.40 that header values
// may use. The list was read off Envoy 1.40 itself (each accepted by
// envoy --mode validate, with or without arguments as recorded here), and
// test/envoy checks it against the Envoy the tests run; a command missing
// here is refused, not passed on to an Envoy that might reject it.
var envoyCommands = func() map[string]envoyCommandArgs {
	m := map[string]envoyCommandArgs{}
	for _, n := range []string{
		"ACCESS_LOG_TYPE",
		"BYTES_RECEIVED",
		"BYTES_RETRANSMITTED",
		"BYTES_SENT",
		"CONNECTION_ID",
		"CONNECTION_TERMINATION_DETAILS",
		"CUSTOM_FLAGS",
		"DOWNSTREAM_CX_RTT",
		"DOWNSTREAM_DECOMPRESSED_HEADER_BYTES_RECEIVED",
		"DOWNSTREAM_DECOMPRESSED_HEADER_BYTES_SENT",
		"DOWNSTREAM_DETECTED_CLOSE_TYPE",
		"DOWNSTREAM_DIRECT_LOCAL_ADDRESS",
		"DOWNSTREAM_DIRECT_LOCAL_ADDRESS_ENDPOINT_ID",
		"DOWNSTREAM_DIRECT_LOCAL_PORT",
		"DOWNSTREAM_DIRECT_REMOTE_ADDRESS",
		"DOWNSTREAM_DIRECT_REMOTE_PORT",
		"DOWNSTREAM_HANDSHAKE_DURATION",
		"DOWNSTREAM_HEADER_BYTES_RECEIVED",
		"DOWNSTREAM_HEADER_BYTES_SENT",
		"DOWNSTREAM_LOCAL_ADDRESS",
		"DOWNSTREAM_LOCAL_ADDRESS_ENDPOINT_ID",
		"DOWNSTREAM_LOCAL_CLOSE_REASON",
		"DOWNSTREAM_LOCAL_DNS_SAN",
		"DOWNSTREAM_LOCAL_EMAIL_SAN",
		"DOWNSTREAM_LOCAL_IP_SAN",
		"DOWNSTREAM_LOCAL_OTHERNAME_SAN",
		"DOWNSTREAM_LOCAL_PORT",
		"DOWNSTREAM_LOCAL_SUBJECT",
		"DOWNSTREAM_LOCAL_URI_SAN",
		"DOWNSTREAM_PEER_CERT",
		"DOWNSTREAM_PEER_CHAIN_FINGERPRINTS_1",
		"DOWNSTREAM_PEER_CHAIN_FINGERPRINTS_256",
		"DOWNSTREAM_PEER_CHAIN_SERIALS",
		"DOWNSTREAM_PEER_DNS_SAN",
		"DOWNSTREAM_PEER_EMAIL_SAN",
		"DOWNSTREAM_PEER_FINGERPRINT_1",
		"DOWNSTREAM_PEER_FINGERPRINT_256",
		"DOWNSTREAM_PEER_IP_SAN",
		"DOWNSTREAM_PEER_ISSUER",
		"DOWNSTREAM_PEER_ISSUER_FINGERPRINT_256",
		"DOWNSTREAM_PEER_ISSUER_SERIAL",
		"DOWNSTREAM_PEER_OTHERNAME_SAN",
		"DOWNSTREAM_PEER_SERIAL",
		"DOWNSTREAM_PEER_SUBJECT",
		"DOWNSTREAM_PEER_URI_SAN",
		"DOWNSTREAM_REMOTE_ADDRESS",
		"DOWNSTREAM_REMOTE_PORT",
		"DOWNSTREAM_TLS_CIPHER",
		"DOWNSTREAM_TLS_GROUP",
		"DOWNSTREAM_TLS_SESSION_ID",
		"DOWNSTREAM_TLS_VERSION",
		"DOWNSTREAM_TRANSPORT_FAILURE_REASON",
		"DOWNSTREAM_WIRE_BYTES_RECEIVED",
		"DOWNSTREAM_WIRE_BYTES_SENT",
		"DURATION",
		"GRPC_STATUS",
		"GRPC_STATUS_NUMBER",
		"HOSTNAME",
		"LOCAL_REPLY_BODY",
		"PATH",
		"PROTOCOL",
		"QUERY_PARAMS",
		"REQUESTED_SERVER_NAME",
		"REQUEST_DURATION",
		"REQUEST_HEADERS_BYTES",
		"REQUEST_TX_DURATION",
		"RESPONSE_CODE",
		"RESPONSE_DURATION",
		"RESPONSE_FLAGS",
		"RESPONSE_FLAGS_LONG",
		"RESPONSE_HEADERS_BYTES",
		"RESPONSE_TRAILERS_BYTES",
		"RESPONSE_TX_DURATION",
		"ROUTE_NAME",
		"STREAM_ID",
		"TRACE_ID",
		"UNIQUE_ID",
		"UPSTREAM_CLUSTER",
		"UPSTREAM_CLUSTER_RAW",
		"UPSTREAM_CONNECTION_ID",
		"UPSTREAM_CONNECTION_IDS_ATTEMPTED",
		"UPSTREAM_CONNECTION_POOL_READY_DURATION",
		"UPSTREAM_DECOMPRESSED_HEADER_BYTES_RECEIVED",
		"UPSTREAM_DECOMPRESSED_HEADER_BYTES_SENT",
		"UPSTREAM_DETECTED_CLOSE_TYPE",
		"UPSTREAM_HEADER_BYTES_RECEIVED",
		"UPSTREAM_HEADER_BYTES_SENT",
		"UPSTREAM_HOST",
		"UPSTREAM_HOSTS_ATTEMPTED",
		"UPSTREAM_HOSTS_ATTEMPTED_WITHOUT_PORT",
		"UPSTREAM_HOST_NAME",
		"UPSTREAM_HOST_NAMES_ATTEMPTED",
		"UPSTREAM_HOST_NAMES_ATTEMPTED_WITHOUT_PORT",
		"UPSTREAM_HOST_NAME_WITHOUT_PORT",
		"UPSTREAM_LOCAL_ADDRESS",
		"UPSTREAM_LOCAL_CLOSE_REASON",
		"UPSTREAM_LOCAL_DNS_SAN",
		"UPSTREAM_LOCAL_IP_SAN",
		"UPSTREAM_LOCAL_PORT",
		"UPSTREAM_LOCAL_URI_SAN",
		"UPSTREAM_PEER_CERT",
		"UPSTREAM_PEER_DNS_SAN",
		"UPSTREAM_PEER_IP_SAN",
		"UPSTREAM_PEER_ISSUER",
		"UPSTREAM_PEER_SUBJECT",
		"UPSTREAM_PEER_URI_SAN",
		"UPSTREAM_PROTOCOL",
		"UPSTREAM_REMOTE_ADDRESS",
		"UPSTREAM_REMOTE_ADDRESS_ENDPOINT_ID",
		"UPSTREAM_REMOTE_PORT",
		"UPSTREAM_REQUEST_ATTEMPT_COUNT",
		"UPSTREAM_SERVER_NAME",
		"UPSTREAM_TLS_CIPHER",
		"UPSTREAM_TLS_GROUP",
		"UPSTREAM_TLS_SESSION_ID",
		"UPSTREAM_TLS_VERSION",
		"UPSTREAM_TRANSPORT_FAILURE_REASON",
		"UPSTREAM_WIRE_BYTES_RECEIVED",
		"UPSTREAM_WIRE_BYTES_SENT",
		"VIRTUAL_CLUSTER_NAME",
	} {
		m[n] = argsNone
	}
	for _, n := range []string{
		"DOWNSTREAM_DIRECT_LOCAL_ADDRESS_WITHOUT_PORT",
		"DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT",
		"DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT",
		"DOWNSTREAM_PEER_CERT_V_END",
		"DOWNSTREAM_PEER_CERT_V_START",
		"DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT",
		"EMIT_TIME",
		"EMIT_TIME_LOCAL",
		"RESPONSE_CODE_DETAILS",
		"START_TIME",
		"START_TIME_LOCAL",
		"UPSTREAM_LOCAL_ADDRESS_WITHOUT_PORT",
		"UPSTREAM_PEER_CERT_V_END",
		"UPSTREAM_PEER_CERT_V_START",
		"UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT",
	} {
		m[n] = argsOptional
	}
	for _, n := range []string{
		"CEL",
		"CLUSTER_METADATA",
		"COMMON_DURATION",
		"DYNAMIC_METADATA",
		"ENVIRONMENT",
		"FILTER_STATE",
		"METADATA",
		"QUERY_PARAM",
		"REQ",
		"REQUEST_HEADER",
		"RESP",
		"RESPONSE_HEADER",
		"RESPONSE_TRAILER",
		"TRAILER",
		"UPSTREAM_FILTER_STATE",
		"UPSTREAM_METADATA",
	} {
		m[n] = argsRequired
	}
	return m
}()

// EnvoyFormatCommands lists the known commands with a sample use each
// (for tests that check the list against a real Envoy).
func EnvoyFormatCommands() []string {
	out := make([]string, 0, len(envoyCommands))
	for n, a := range envoyCommands {
		switch a {
		case argsRequired:
			out = append(out, "%"+n+"("+sampleArg(n)+")%")
		default:
			out = append(out, "%"+n+"%")
		}
	}
	return out
}

func sampleArg(name string) string {
	switch name {
	case "METADATA":
		return "ROUTE:gatehouse:k"
	case "COMMON_DURATION":
		return "DS_RX_BEG:DS_RX_END:ms"
	case "CEL":
		return "request.path"
	}
	return "x-sample"
}

// formatCommand is Envoy's own grammar of one operator, from the '%'.
var formatCommand = regexp.MustCompile(`^%([A-Z0-9_]+)(\([^)]*\))?(:[0-9]+)?%`)

// checkEnvoyFormat returns what Envoy would refuse in a format string, or
// "".
func checkEnvoyFormat(v string) string {
	for i := 0; i < len(v); i++ {
		if v[i] != '%' {
			continue
		}
		if i+1 < len(v) && v[i+1] == '%' {
			i++ // %% is a literal percent sign
			continue
		}
		m := formatCommand.FindStringSubmatch(v[i:])
		if m == nil {
			return fmt.Sprintf("has a '%%' at byte %d that starts no %%COMMAND%%: values are Envoy format strings; write %%%% for a literal percent sign", i)
		}
		name, args, length := m[1], m[2], m[3]
		kind, ok := envoyCommands[name]
		switch {
		case !ok:
			return fmt.Sprintf("uses %%%s%%, which is not a format command of Envoy %s (see Envoy's access log command operators)", name, EnvoyVersion)
		case kind == argsNone && (args != "" || length != ""):
			return fmt.Sprintf("gives %%%s%% arguments or a length, which it does not take", name)
		case kind == argsRequired && len(args) <= 2:
			return fmt.Sprintf("uses %%%s%% without its arguments, e.g. %%%s(%s)%%", name, name, sampleArg(name))
		}
		i += len(m[0]) - 1
	}
	return ""
}

// EnvoyVersion is the Envoy release whose API gatehouse renders.
const EnvoyVersion = "1.40"
