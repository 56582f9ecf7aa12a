// Command loadgen drives gatehouse's hot paths (and a no-op server, the
// ceiling of gRPC on the machine) with closed-loop load on loopback:
//
//	loadgen rls      [flags]   envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit
//	loadgen authz    [flags]   envoy.service.auth.v3.Authorization/Check
//	loadgen extproc  [flags]   envoy.service.ext_proc.v3.ExternalProcessor/Process
//	loadgen http     [flags]   HTTP/1.1 GETs through Envoy's listener (-rate: open loop)
//	loadgen null     -api rls|authz|extproc|http -addr host:port
//	                           a server answering OK / CONTINUE / 200 at once
//	loadgen envoy-bootstrap -xds A -admin A [-direct A -upstream A]
//	                           envoy/bootstrap.yaml filled in, with a static baseline listener
//	loadgen mint-jwt -n N -jwks-out F -tokens-out F [-iss X -aud Y]
//	                           an RS256 key's JWKS and N valid tokens for authz runs
//
// The load commands share the flags of ../shared/bench's tools (-addr
// -concurrency -conns -duration -n -warmup -timeout -wait -seed) and end with
// one machine-readable line "RESULT key=value ..." (rps, p50_ms, p90_ms,
// p99_ms, p999_ms, err, client_cpu_pct and per-answer counts).
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	args := os.Args[2:]
	var err error
	switch os.Args[1] {
	case "rls":
		err = runRLS(args)
	case "authz":
		err = runAuthz(args)
	case "extproc":
		err = runExtProc(args)
	case "http":
		err = runHTTP(args)
	case "null":
		err = runNull(args)
	case "envoy-bootstrap":
		err = runBootstrap(args)
	case "mint-jwt":
		err = runMint(args)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: loadgen rls|authz|extproc|http|null|envoy-bootstrap|mint-jwt [flags] (-h for the flags of each)")
	os.Exit(2)
}
