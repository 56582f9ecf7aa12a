package envoy_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/gatehouse/gatehouse/test/harness"
)

// composeConfig is examples/compose.yaml with the addresses of the
// docker-compose network (service names, 0.0.0.0) rewritten for loopback;
// nothing else changes.
func composeConfig(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(harness.RepoRoot(), "examples", "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	set := func(v any, key, val string) {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("examples/compose.yaml: no %s to rewrite", key)
		}
		m[key] = val
	}
	set(dig(doc, "server", "admin"), "address", "{{.Admin}}")
	set(doc["authz"], "address", "{{.Authz}}")
	set(doc["extproc"], "address", "{{.ExtProc}}")
	set(doc["ratelimit"], "address", "{{.RateLimit}}")
	set(doc["xds"], "address", "{{.XDS}}")
	doc["redis"].(map[string]any)["addresses"] = []any{"{{.Redis}}"}
	delete(doc["xds"].(map[string]any), "services") // Envoy dials the listen addresses
	set(doc["listeners"].([]any)[0], "address", "{{.Listener}}")
	for _, c := range doc["clusters"].([]any) {
		for _, e := range dig(c, "endpoints").([]any) {
			if dig(e, "address") == "upstream:8080" {
				set(e, "address", `{{.Upstream "upstream"}}`)
			}
		}
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func dig(v any, path ...string) any {
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

var readmeCurl = regexp.MustCompile(`^\s*(curl .*?)\s*(#\s*(\d{3})?.*)?$`)

// TestComposeQuickStart: the docker-compose quick start of the README, as a
// newcomer types it: the harness serves examples/compose.yaml (addresses
// rewritten for loopback) to a real Envoy, and the README's curl commands
// give what the README says they give.
func TestComposeQuickStart(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed")
	}
	m := harness.Start(t, harness.Options{Config: composeConfig(t), Redis: true, Upstreams: []string{"upstream"}})
	readme, err := os.ReadFile(filepath.Join(harness.RepoRoot(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	block := string(readme)
	i := strings.Index(block, "docker compose up --build\n")
	if i < 0 {
		t.Fatal("README has no docker compose quick start")
	}
	block = block[i : strings.Index(block[i:], "```")+i]
	type cmd struct{ line, status string }
	var cmds []cmd
	lines := strings.Split(block, "\n")
	for j, l := range lines {
		mm := readmeCurl.FindStringSubmatch(l)
		if mm == nil {
			continue
		}
		c := cmd{line: mm[1], status: mm[3]}
		if mm[2] == "" && j+1 < len(lines) {
			if n := regexp.MustCompile(`^\s*#\s*(\d{3})`).FindStringSubmatch(lines[j+1]); n != nil {
				c.status = n[1]
			}
		}
		cmds = append(cmds, c)
	}
	if len(cmds) < 4 {
		t.Fatalf("found %d curl commands in the README's quick start; want 4", len(cmds))
	}
	envoyPort := strings.TrimPrefix(m.Addrs(0).Listener, "127.0.0.1:")
	adminPort := strings.TrimPrefix(m.Addrs(0).Admin, "127.0.0.1:")
	for _, c := range cmds {
		line := strings.NewReplacer("localhost:10000", "127.0.0.1:"+envoyPort, "localhost:9190", "127.0.0.1:"+adminPort, "curl ", curl+" --max-time 10 ").Replace(c.line)
		cmd := exec.Command("bash", "-c", line)
		cmd.Dir = harness.RepoRoot()
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Errorf("%s: %v\n%s", c.line, err, out.String())
			continue
		}
		got := out.String()
		if c.status != "" && !regexp.MustCompile(`(?m)^HTTP/[0-9.]+ `+c.status+` `).MatchString(got) {
			t.Errorf("%s: want status %s, got:\n%s", c.line, c.status, got)
		}
		lower := strings.ToLower(got)
		switch {
		case strings.Contains(c.line, "/healthz"):
			if !strings.Contains(got, "\nok") {
				t.Errorf("%s: body is not ok:\n%s", c.line, got)
			}
		case strings.Contains(c.line, "/api/hello") && c.status == "401":
			if !strings.Contains(lower, "www-authenticate: bearer") || !strings.Contains(lower, "x-gatehouse-decision-id:") {
				t.Errorf("%s: no Bearer challenge or decision id:\n%s", c.line, got)
			}
		case strings.Contains(c.line, "/api/hello"):
			if !strings.Contains(got, `"x-gatehouse-subject":["demo-user"]`) || !strings.Contains(got, `"x-gatehouse-tier":["pro"]`) {
				t.Errorf("%s: the upstream did not see subject demo-user, tier pro:\n%s", c.line, got)
			}
		case strings.Contains(c.line, "/xds/nodes"):
			if !strings.Contains(got, `"inSync": true`) || strings.Contains(got, `"inSync": false`) {
				t.Errorf("%s: Envoy not in sync:\n%s", c.line, got)
			}
		}
	}
}
