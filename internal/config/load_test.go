package config

import (
	"bytes"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v2"
)

var update = flag.Bool("update", false, "rewrite golden files")

// write creates files (name → content) in a fresh directory.
func write(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func noEnv(string) (string, bool) { return "", false }

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		// want are substrings that must each appear in the error, in
		// order of the rendered (file, line) sort.
		want []string
	}{
		{
			name: "syntax error names the line",
			yaml: "apiVersion: gatehouse/v1\nserver:\n  log: {level: info\n",
			want: []string{"c.yaml:", "invalid YAML"},
		},
		{
			name: "missing apiVersion",
			yaml: "server: {}\n",
			want: []string{"c.yaml:1: apiVersion: missing; every config file starts with apiVersion: gatehouse/v1"},
		},
		{
			name: "wrong apiVersion",
			yaml: "apiVersion: gatehouse/v2\n",
			want: []string{`c.yaml:1: apiVersion: "gatehouse/v2" is not supported; use gatehouse/v1`},
		},
		{
			name: "top level is not a mapping",
			yaml: "- a\n- b\n",
			want: []string{"c.yaml:1: a config file holds a mapping at the top"},
		},
		{
			name: "empty file",
			yaml: "# nothing\n",
			want: []string{"c.yaml: config is empty"},
		},
		{
			name: "unknown field with suggestion",
			yaml: "apiVersion: gatehouse/v1\nserver:\n  shutdownTimout: 5s\n",
			want: []string{`c.yaml:3: server.shutdownTimout: unknown field "shutdownTimout" (did you mean "shutdownTimeout"?)`},
		},
		{
			name: "unknown field lists valid ones",
			yaml: "apiVersion: gatehouse/v1\nserver:\n  log: {colour: red}\n",
			want: []string{`server.log.colour: unknown field "colour"; valid fields: format, level`},
		},
		{
			name: "wrong type",
			yaml: "apiVersion: gatehouse/v1\nserver:\n  grpc: {maxConcurrentStreams: lots}\n",
			want: []string{`c.yaml:3: server.grpc.maxConcurrentStreams: expected a whole number, got "lots"`},
		},
		{
			name: "mapping where a list is expected",
			yaml: "apiVersion: gatehouse/v1\nroutes: {id: x}\n",
			want: []string{"c.yaml:2: routes: expected a list, got a mapping"},
		},
		{
			name: "bad enum",
			yaml: "apiVersion: gatehouse/v1\nserver:\n  log: {format: xml}\n",
			want: []string{`server.log.format: "xml" is not a log format; use json|text`},
		},
		{
			name: "duration without unit",
			yaml: "apiVersion: gatehouse/v1\nserver: {shutdownTimeout: 10}\n",
			want: []string{`server.shutdownTimeout: "10" has no unit`},
		},
		{
			name: "duplicate key",
			yaml: "apiVersion: gatehouse/v1\nserver:\n  shutdownTimeout: 1s\n  shutdownTimeout: 2s\n",
			want: []string{`c.yaml:4: server.shutdownTimeout: duplicate field "shutdownTimeout" (first at line 3)`},
		},
		{
			name: "literal secret refused without echoing it",
			yaml: "apiVersion: gatehouse/v1\nredis: {addresses: [\"127.0.0.1:6379\"], password: s3cr3t}\n",
			want: []string{"redis.password: a literal secret is not allowed in config; write env:NAME or file:PATH"},
		},
		{
			name: "missing secret",
			yaml: "apiVersion: gatehouse/v1\nredis: {addresses: [\"127.0.0.1:6379\"], password: env:GH_NOPE}\n",
			want: []string{"c.yaml:2: redis.password: secret env:GH_NOPE: environment variable GH_NOPE is not set"},
		},
		{
			name: "missing secret file",
			yaml: "apiVersion: gatehouse/v1\nredis: {addresses: [\"127.0.0.1:6379\"], password: file:nope.txt}\n",
			want: []string{"redis.password: secret file:nope.txt: cannot read secret file:", "no such file or directory"},
		},
		{
			name: "duplicate route id and bad match",
			yaml: "apiVersion: gatehouse/v1\nroutes:\n  - id: a\n  - id: a\n    match: {prefix: x}\n",
			want: []string{
				`c.yaml:4: routes[1].id: duplicate route id "a" (also routes[0])`,
				`c.yaml:5: routes[1].match.prefix: "x" must start with /`,
			},
		},
		{
			name: "same address twice",
			yaml: "apiVersion: gatehouse/v1\nauthz: {address: 127.0.0.1:9190}\n",
			want: []string{`authz.address: "127.0.0.1:9190" is also the address of server.admin.address`},
		},
		{
			// Inside a known field, so that the aliases are decoded:
			// 1,100 copies of a 1,000-host list pass maxNodes.
			name: "alias bomb is bounded",
			yaml: "apiVersion: gatehouse/v1\nauthz:\n  unmatched:\n    hosts:\n" +
				"      - &u {action: deny, hosts: [" + strings.TrimSuffix(strings.Repeat("a.example.com,", 1000), ",") + "]}\n" +
				strings.Repeat("      - *u\n", 1100),
			want: []string{"config is too large"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := write(t, map[string]string{"c.yaml": tt.yaml})
			_, err := Load(filepath.Join(dir, "c.yaml"), LoadOptions{LookupEnv: noEnv})
			if err == nil {
				t.Fatalf("Load() = nil error; want %q", tt.want)
			}
			got := strings.ReplaceAll(err.Error(), dir+string(filepath.Separator), "")
			rest := got
			for _, w := range tt.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("Load() error =\n%s\nwant it to contain (in order) %q", got, w)
				}
				rest = rest[i+len(w):]
			}
		})
	}
}

func TestLoadNotFound(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "missing.yaml"), LoadOptions{})
	if err == nil || !strings.Contains(err.Error(), "missing.yaml: no such file or directory") {
		t.Fatalf("Load(missing) = %v; want a no such file error naming the file", err)
	}
	_, err = Load(t.TempDir(), LoadOptions{})
	if err == nil || !strings.Contains(err.Error(), "holds no *.yaml or *.yml files") {
		t.Fatalf("Load(empty dir) = %v; want holds no *.yaml", err)
	}
}

func TestGoldenErrors(t *testing.T) {
	in := filepath.Join("testdata", "golden", "broken.yaml")
	_, err := Load(in, LoadOptions{LookupEnv: noEnv})
	if err == nil {
		t.Fatal("Load(broken.yaml) = nil error")
	}
	got := err.Error() + "\n"
	golden := filepath.Join("testdata", "golden", "broken.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("errors of broken.yaml differ from %s (-want +got; run go test -update to accept):\n%s", golden, diff)
	}
}

func TestDefaults(t *testing.T) {
	cfg, err := LoadBytes("t.yaml", []byte("apiVersion: gatehouse/v1\nauthz: {}\nredis: {addresses: [\"127.0.0.1:6379\"]}\n"), LoadOptions{})
	if err != nil {
		t.Fatalf("LoadBytes() = %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"server.shutdownTimeout", cfg.Server.ShutdownTimeout.D(), 15 * time.Second},
		{"server.admin.address", cfg.Server.Admin.Address, "127.0.0.1:9190"},
		{"server.grpc.maxRecvMessageSize", cfg.Server.GRPC.MaxRecvMessageSize, ByteSize(4 << 20)},
		{"server.grpc.keepalive.permitWithoutStream", cfg.Server.GRPC.Keepalive.PermitWithoutStream, true},
		{"server.log.format", cfg.Server.Log.Format, LogJSON},
		{"server.tracing.sampleRatio", cfg.Server.Tracing.SampleRatio, 1.0},
		{"authz.address", cfg.Authz.Address, "127.0.0.1:9191"},
		{"redis.mode", cfg.Redis.Mode, RedisSingle},
		{"redis.keyPrefix", cfg.Redis.KeyPrefix, "gh:"},
		{"audit.stdout", cfg.Audit.Stdout, true},
		{"extproc (absent section stays off)", cfg.ExtProc == nil, true},
	}
	for _, c := range checks {
		if diff := cmp.Diff(c.want, c.got); diff != "" {
			t.Errorf("%s default (-want +got):\n%s", c.name, diff)
		}
	}
	if cfg.Source.Has("server.shutdownTimeout") {
		t.Errorf("Source.Has(default field) = true; want false")
	}
}

func TestAuditStdoutDefault(t *testing.T) {
	for _, tt := range []struct {
		yaml string
		want bool
	}{
		{"apiVersion: gatehouse/v1\n", true},
		{"apiVersion: gatehouse/v1\naudit: {file: /var/log/gatehouse/audit.log}\n", false},
		{"apiVersion: gatehouse/v1\naudit: {file: /var/log/gatehouse/audit.log, stdout: true}\n", true},
	} {
		cfg, err := LoadBytes("t.yaml", []byte(tt.yaml), LoadOptions{})
		if err != nil {
			t.Fatalf("LoadBytes(%q) = %v", tt.yaml, err)
		}
		if cfg.Audit.Stdout != tt.want {
			t.Errorf("LoadBytes(%q).Audit.Stdout = %v; want %v", tt.yaml, cfg.Audit.Stdout, tt.want)
		}
	}
}

func TestDirectoryMerge(t *testing.T) {
	dir := write(t, map[string]string{
		"10-base.yaml": "apiVersion: gatehouse/v1\nserver:\n  log: {level: debug}\nroutes:\n  - id: a\n    match: {prefix: /a}\n",
		"20-more.yaml": "apiVersion: gatehouse/v1\nserver:\n  shutdownTimeout: 3s\nroutes:\n  - id: b\n    match: {prefix: /b}\n  - id: c\n    match: {prefix: c}\n",
		".hidden.yaml": "not: [valid",
		"notes.txt":    "ignored",
	})
	_, err := Load(dir, LoadOptions{})
	if err == nil {
		t.Fatal("Load(dir) = nil; want the error of routes[2] located in 20-more.yaml")
	}
	want := filepath.Join(dir, "20-more.yaml") + `:8: routes[2].match.prefix: "c" must start with /`
	if err.Error() != want {
		t.Fatalf("Load(dir) error = %q; want %q", err, want)
	}

	// Fixed: the merged config has both files' routes in file order.
	if err := os.WriteFile(filepath.Join(dir, "20-more.yaml"), []byte("apiVersion: gatehouse/v1\nserver:\n  shutdownTimeout: 3s\nroutes:\n  - id: b\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(dir, LoadOptions{})
	if err != nil {
		t.Fatalf("Load(dir) = %v", err)
	}
	var ids []string
	for _, r := range cfg.Routes {
		ids = append(ids, r.ID)
	}
	if diff := cmp.Diff([]string{"a", "b"}, ids); diff != "" {
		t.Errorf("merged route ids (-want +got):\n%s", diff)
	}
	if cfg.Server.Log.Level != LogDebug || cfg.Server.ShutdownTimeout.D() != 3*time.Second {
		t.Errorf("merged server = %+v; want level debug from one file and timeout 3s from the other", cfg.Server)
	}
	if got := len(cfg.Source.Files); got != 2 {
		t.Errorf("Source.Files = %v; want the 2 yaml files", cfg.Source.Files)
	}
}

func TestDirectoryConflict(t *testing.T) {
	dir := write(t, map[string]string{
		"a.yaml": "apiVersion: gatehouse/v1\nserver: {shutdownTimeout: 1s}\n",
		"b.yaml": "apiVersion: gatehouse/v1\nserver: {shutdownTimeout: 2s}\n",
	})
	_, err := Load(dir, LoadOptions{})
	want := "b.yaml:2: server.shutdownTimeout: set here and also at " + filepath.Join(dir, "a.yaml") + ":2"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Load(conflicting dir) = %v; want %q", err, want)
	}
}

func TestSecrets(t *testing.T) {
	dir := write(t, map[string]string{
		"secrets/redis": "from-file\n",
		"c.yaml":        "apiVersion: gatehouse/v1\nredis:\n  addresses: [\"127.0.0.1:6379\"]\n  password: file:secrets/redis\n  sentinelPassword: env:SENTINEL_PW\n",
	})
	env := func(k string) (string, bool) {
		if k == "SENTINEL_PW" {
			return "from-env", true
		}
		return "", false
	}
	cfg, err := Load(filepath.Join(dir, "c.yaml"), LoadOptions{LookupEnv: env})
	if err != nil {
		t.Fatalf("Load() = %v", err)
	}
	if got := string(cfg.Redis.Password.Value()); got != "from-file" {
		t.Errorf("password = %q; want from-file (relative to the config dir, newline trimmed)", got)
	}
	if got := string(cfg.Redis.SentinelPassword.Value()); got != "from-env" {
		t.Errorf("sentinelPassword = %q; want from-env", got)
	}
	out, err := cfg.Redacted()
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"from-file", "from-env"} {
		if strings.Contains(string(out), secret) {
			t.Errorf("Redacted() contains the secret %q:\n%s", secret, out)
		}
	}
	if !strings.Contains(string(out), "password: file:secrets/redis") {
		t.Errorf("Redacted() should show the reference; got:\n%s", out)
	}

	// validate --skip-secrets checks the form only.
	if _, err := Load(filepath.Join(dir, "c.yaml"), LoadOptions{LookupEnv: noEnv, SkipSecrets: true}); err != nil {
		t.Errorf("Load(SkipSecrets) = %v; want nil", err)
	}
}

// TestSecretFileBounded: a file: secret is a small regular file; a huge
// file or a device (file:/dev/zero would read forever) is refused.
func TestSecretFileBounded(t *testing.T) {
	dir := write(t, map[string]string{
		"big":    strings.Repeat("x", MaxSecretSize+1),
		"c.yaml": "apiVersion: gatehouse/v1\nredis: {addresses: [\"127.0.0.1:6379\"], password: file:big}\n",
		"d.yaml": "apiVersion: gatehouse/v1\nredis: {addresses: [\"127.0.0.1:6379\"], password: file:/dev/null}\n",
	})
	for name, want := range map[string]string{"c.yaml": "is larger than", "d.yaml": "is not a regular file"} {
		_, err := Load(filepath.Join(dir, name), LoadOptions{})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Load(%s) = %v; want an error containing %q", name, err, want)
		}
	}
}

// TestLiteralSecretListNotEchoed: a secret written where a list of
// references belongs is refused without repeating it.
func TestLiteralSecretListNotEchoed(t *testing.T) {
	y := "apiVersion: gatehouse/v1\nauthz:\n  webhooks:\n    - {name: gh, scheme: github, secrets: whsec-s3cr3t-value}\n"
	_, err := LoadBytes("c.yaml", []byte(y), LoadOptions{LookupEnv: noEnv})
	if err == nil || strings.Contains(err.Error(), "s3cr3t") || !strings.Contains(err.Error(), "authz.webhooks[0].secrets: expected a list of secret references") {
		t.Fatalf("LoadBytes() = %v; want a secrets error that does not echo the value", err)
	}
}

// TestSecretNotLogged: a resolved secret reaches neither slog (JSON or
// text) nor fmt's verbs; only its reference does.
func TestSecretNotLogged(t *testing.T) {
	cfg, err := LoadBytes("c.yaml", []byte("apiVersion: gatehouse/v1\nredis: {addresses: [\"127.0.0.1:6379\"], password: env:PW}\n"),
		LoadOptions{LookupEnv: func(string) (string, bool) { return "hunter2-value", true }})
	if err != nil {
		t.Fatalf("LoadBytes() = %v", err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "pw", cfg.Redis.Password, "redis", cfg.Redis)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "pw", cfg.Redis.Password)
	fmt.Fprintf(&buf, "%v %+v %#v %s", cfg.Redis.Password, *cfg.Redis, *cfg.Redis, cfg.Redis.Password)
	if strings.Contains(buf.String(), "hunter2-value") || strings.Contains(buf.String(), "0x68, 0x75, 0x6e, 0x74") {
		t.Errorf("log output holds the secret value:\n%s", buf.String())
	}
	if !strings.Contains(buf.String(), `"pw":"env:PW"`) {
		t.Errorf("slog JSON output does not name the reference env:PW:\n%s", buf.String())
	}
}

func TestVersionDeterministic(t *testing.T) {
	a := "apiVersion: gatehouse/v1\nauthz: {}\nroutes: [{id: a, match: {prefix: /}}]\n"
	b := "apiVersion: gatehouse/v1\nroutes: [{id: a, match: {prefix: /}}]\nauthz: {address: 127.0.0.1:9191}\n" // same effective config
	c := "apiVersion: gatehouse/v1\nauthz: {}\nroutes: [{id: b, match: {prefix: /}}]\n"
	load := func(s string) string {
		cfg, err := LoadBytes("t", []byte(s), LoadOptions{})
		if err != nil {
			t.Fatalf("LoadBytes() = %v", err)
		}
		return cfg.Version
	}
	if va, vb := load(a), load(b); va != vb {
		t.Errorf("versions of equivalent configs differ: %s vs %s", va, vb)
	}
	if va, vc := load(a), load(c); va == vc {
		t.Errorf("versions of different configs are equal: %s", va)
	}
}

func TestVersionCoversInputFilesAndSecrets(t *testing.T) {
	dir := write(t, map[string]string{
		"spec.yaml": "openapi: 3.0.3\n",
		"pw":        "one\n",
		"c.yaml": "apiVersion: gatehouse/v1\nredis: {addresses: [\"127.0.0.1:6379\"], password: file:pw}\n" +
			"extproc: {}\nroutes:\n  - id: a\n    extproc: {openapi: {file: spec.yaml}}\n",
	})
	load := func() *Config {
		cfg, err := Load(filepath.Join(dir, "c.yaml"), LoadOptions{})
		if err != nil {
			t.Fatalf("Load() = %v", err)
		}
		return cfg
	}
	a := load()
	if diff := cmp.Diff([]string{filepath.Join(dir, "spec.yaml")}, a.Source.InputFiles()); diff != "" {
		t.Errorf("InputFiles() (-want +got):\n%s", diff)
	}
	if b := load(); b.Version != a.Version || !b.SameContent(a) {
		t.Fatalf("reloading the same files changed the version (%s → %s) or content", a.Version, b.Version)
	}

	// A changed referenced file is a new version.
	if err := os.WriteFile(filepath.Join(dir, "spec.yaml"), []byte("openapi: 3.1.0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b := load()
	if b.Version == a.Version || b.SameContent(a) {
		t.Errorf("a changed OpenAPI document kept version %s", a.Version)
	}

	// A rotated secret keeps the version (it never shows a secret) but is
	// a change to apply.
	if err := os.WriteFile(filepath.Join(dir, "pw"), []byte("two\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := load()
	if c.Version != b.Version {
		t.Errorf("a rotated secret changed the version: %s → %s", b.Version, c.Version)
	}
	if c.SameContent(b) {
		t.Error("a rotated secret is not seen as a change")
	}
}

// TestVersionCoversInputDirectory: ratelimit.envoyConfigs may name a
// directory; a changed file inside it is a new version.
func TestVersionCoversInputDirectory(t *testing.T) {
	dir := write(t, map[string]string{
		"envoy/a.yaml": "domain: a\n",
		"c.yaml":       "apiVersion: gatehouse/v1\nratelimit: {envoyConfigs: [envoy]}\n",
	})
	load := func() *Config {
		cfg, err := Load(filepath.Join(dir, "c.yaml"), LoadOptions{})
		if err != nil {
			t.Fatalf("Load() = %v", err)
		}
		return cfg
	}
	a := load()
	if err := os.WriteFile(filepath.Join(dir, "envoy", "a.yaml"), []byte("domain: b\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b := load(); b.Version == a.Version || b.SameContent(a) {
		t.Errorf("a changed file in an envoyConfigs directory kept version %s", a.Version)
	}
}

func TestMergeKeysAndAliases(t *testing.T) {
	y := `apiVersion: gatehouse/v1
base: &base {prefix: /shared}
routes:
  - id: a
    match: {<<: *base, methods: [GET]}
`
	_, err := LoadBytes("t.yaml", []byte(y), LoadOptions{})
	if err == nil || !strings.Contains(err.Error(), `t.yaml:2: base: unknown field "base"`) {
		t.Fatalf("LoadBytes() = %v; want unknown field base (anchors must live in a known field)", err)
	}
	y = `apiVersion: gatehouse/v1
routes:
  - id: a
    match: &m {prefix: /shared}
  - id: b
    match: {<<: *m, methods: [GET]}
`
	cfg, err := LoadBytes("t.yaml", []byte(y), LoadOptions{})
	if err != nil {
		t.Fatalf("LoadBytes() = %v", err)
	}
	if got := cfg.Routes[1].Match; got.Prefix != "/shared" || len(got.Methods) != 1 {
		t.Errorf("merged match = %+v; want prefix from the anchor and own methods", got)
	}
}

// TestMergeKeyBomb: merge keys over lists of aliases of mappings that merge
// again multiply (10^12 pairs here) like aliases of aliases; the loader
// must refuse the config instead of expanding it.
func TestMergeKeyBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("apiVersion: gatehouse/v1\nx0: &a0 {k: v}\n")
	for i := 1; i <= 12; i++ {
		refs := strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*a%d,", i-1), 10), ",")
		fmt.Fprintf(&b, "x%d: &a%d {<<: [%s]}\n", i, i, refs)
	}
	b.WriteString("server:\n  <<: *a12\n")
	_, err := LoadBytes("t.yaml", []byte(b.String()), LoadOptions{LookupEnv: noEnv})
	if err == nil || !strings.Contains(err.Error(), "config is too large") {
		t.Fatalf("LoadBytes(merge-key bomb) = %v; want config is too large", err)
	}
}

func FuzzLoadBytes(f *testing.F) {
	f.Add([]byte("apiVersion: gatehouse/v1\nauthz: {}\nroutes: [{id: a, match: {prefix: /}}]\n"))
	f.Add([]byte("apiVersion: gatehouse/v1\nserver: {log: {level: x}}\nredis: {password: lit}\n"))
	f.Add([]byte("apiVersion: gatehouse/v1\nx: &a [1,1]\ny: [*a,*a]\n"))
	f.Add([]byte("{"))
	if b, err := os.ReadFile(filepath.Join("testdata", "golden", "broken.yaml")); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := LoadBytes("f.yaml", data, LoadOptions{LookupEnv: noEnv})
		if err == nil && cfg == nil {
			t.Fatal("LoadBytes() = nil config and nil error")
		}
		if err != nil && err.Error() == "" {
			t.Fatal("LoadBytes() returned an empty error message")
		}
	})
}

// TestSectionDefaults: every section's defaults decode from their tags, and
// Defaults gives what the loader fills in for a section written empty.
func TestSectionDefaults(t *testing.T) {
	cfg, err := LoadBytes("<test>", []byte("apiVersion: gatehouse/v1\nredis: {addresses: [\"127.0.0.1:6379\"]}\nauthz: {}\nextproc: {}\nratelimit: {}\nxds: {}\n"), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for name, tt := range map[string]struct{ got, want any }{
		"server":    {Defaults[Server](), cfg.Server},
		"audit":     {Defaults[Audit](), cfg.Audit},
		"authz":     {Defaults[Authz](), *cfg.Authz},
		"extproc":   {Defaults[ExtProc](), *cfg.ExtProc},
		"ratelimit": {Defaults[RateLimit](), *cfg.RateLimit},
		"xds":       {Defaults[XDS](), *cfg.XDS},
	} {
		if !sameYAMLText(t, tt.got, tt.want) {
			t.Errorf("Defaults of %s differ from the loaded empty section", name)
		}
	}
	red := Defaults[Redis]()
	red.Addresses = cfg.Redis.Addresses
	if !sameYAMLText(t, red, *cfg.Redis) {
		t.Errorf("Defaults of redis differ from the loaded section")
	}
}

func sameYAMLText(t *testing.T, a, b any) bool {
	t.Helper()
	x, err := yaml.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := yaml.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if string(x) != string(y) {
		t.Logf("%s\n---\n%s", x, y)
	}
	return string(x) == string(y)
}
