//go:build pprof

package main

import (
	"net/http"
	_ "net/http/pprof" // registers /debug/pprof on http.DefaultServeMux
	"os"
)

// A binary built with -tags pprof serves net/http/pprof on
// GATEHOUSE_PPROF (host:port) for the profiling scenario
// (scripts/ratelimit/profile.sh). The release binary has no such
// listener: the profile pages would expose memory contents.
func init() {
	if addr := os.Getenv("GATEHOUSE_PPROF"); addr != "" {
		go func() { _ = http.ListenAndServe(addr, nil) }()
	}
}
