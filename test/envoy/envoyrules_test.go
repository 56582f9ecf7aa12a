package envoy_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

// routeBootstrap is a static bootstrap with one route that adds the given
// request headers and matches the given path regex, and a runtime layer.
func routeBootstrap(t *testing.T, regex string, headers []string, runtime string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString(`static_resources:
  listeners:
  - name: l
    address: {socket_address: {address: 127.0.0.1, port_value: 1}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: x
          http_filters: [{name: envoy.filters.http.router, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}]
          route_config:
            virtual_hosts:
            - name: v
              domains: ["*"]
              routes:
              - match: {safe_regex: {regex: ` + strconv.Quote(regex) + `}}
                direct_response: {status: 200}
                request_headers_to_add:
`)
	for i, h := range headers {
		fmt.Fprintf(&b, "                - header: {key: x-h%d, value: %s}\n", i, strconv.Quote(h))
	}
	if len(headers) == 0 {
		b.WriteString("                - header: {key: x-h, value: v}\n")
	}
	if runtime != "" {
		b.WriteString("layered_runtime:\n  layers:\n  - name: s\n    static_layer: {" + runtime + "}\n")
	}
	f := filepath.Join(t.TempDir(), "bs.yaml")
	if err := os.WriteFile(f, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestEnvoyFormatCommands: every format command gatehouse lets a header
// value use is one the Envoy under test accepts, with arguments where
// gatehouse requires them.
func TestEnvoyFormatCommands(t *testing.T) {
	envoy := testenv.Envoy(t)
	cmds := config.EnvoyFormatCommands()
	if len(cmds) < 100 {
		t.Fatalf("only %d commands known", len(cmds))
	}
	out, err := exec.Command(envoy, "--mode", "validate", "-c", routeBootstrap(t, "/", cmds, ""), "--disable-hot-restart", "-l", "error").CombinedOutput()
	if err != nil {
		t.Errorf("Envoy refuses a format command gatehouse accepts:\n%s", lastLines(string(out), 5))
	}
}

var programSize = regexp.MustCompile(`program size of (\d+)`)

// TestEnvoyRegexSizeEstimate: gatehouse's estimate of a regex's RE2
// program never falls below Envoy's own count (read from Envoy with its
// limit at 1), so a regex gatehouse accepts is one Envoy accepts; and it
// stays close, so that few that Envoy would take are refused.
func TestEnvoyRegexSizeEstimate(t *testing.T) {
	envoy := testenv.Envoy(t)
	for _, re := range []string{
		`/x`, `a|b|c`, `(abc)+`, `(?i)/admin/[a-z]+`, `[^/]+`, `\d{3}-\d{4}`, `.*`, `(a(b(c)))`, `x{2,5}`, `\p{L}+`, `\p{Greek}`,
		`/api/v[0-9]+/(users|orders)/[0-9a-f-]{36}`, `[a-z]{30}[0-9]{30}[A-Z]{40}`, `(?:foo|bar|baz|qux)+quux`, `\w+@\w+\.com`,
		`/hooks/(gh|st)`, `eu-[a-z]+-[0-9]`, `[a-cx-z0-9]{10}`, `(?s).+`, `[α-ω]+`, `/v[12]/items/[^/]+/parts/[0-9]{1,6}`,
	} {
		out, _ := exec.Command(envoy, "--mode", "validate", "-c", routeBootstrap(t, re, nil, "re2.max_program_size.error_level: 1"),
			"--disable-hot-restart", "-l", "error").CombinedOutput()
		m := programSize.FindSubmatch(out)
		if m == nil {
			if !strings.Contains(string(out), "OK") {
				t.Fatalf("%s: Envoy reported no program size:\n%s", re, lastLines(string(out), 3))
			}
			continue // Envoy does not count this one (Unicode script classes)
		}
		real, _ := strconv.Atoi(string(m[1]))
		est, ok := config.RE2ProgramSize(re)
		if !ok {
			t.Fatalf("%s: not parsed", re)
		}
		if est < real || est > real+real/2+4 {
			t.Errorf("RE2ProgramSize(%q) = %d; Envoy counts %d (want at least that, and not far over)", re, est, real)
		}
	}
}
