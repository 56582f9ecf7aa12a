package chartcheck

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// binDir holds the binary gatehouseBin built; TestMain removes it.
var binDir string

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// gatehouseBin builds the gatehouse binary of this checkout once per test
// run (or uses $GATEHOUSE_BIN), so that the chart's config is judged by the
// real loader and validator rather than by a copy of their rules.
var gatehouseBin = sync.OnceValues(func() (string, error) {
	if p := os.Getenv("GATEHOUSE_BIN"); p != "" {
		return p, nil
	}
	root, err := filepath.Abs(filepath.Join("..", "..", ".."))
	if err != nil {
		return "", err
	}
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil || !bytes.HasPrefix(mod, []byte("module github.com/gatehouse/gatehouse\n")) {
		return "", fmt.Errorf("%s is not gatehouse's module root (go.mod: %v)", root, err)
	}
	dir, err := os.MkdirTemp("", "chartcheck-bin-")
	if err != nil {
		return "", err
	}
	binDir = dir
	bin := filepath.Join(dir, "gatehouse")
	cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", bin, "./cmd/gatehouse")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/gatehouse: %v\n%s", err, out)
	}
	return bin, nil
})

func binary(t *testing.T) string {
	t.Helper()
	bin, err := gatehouseBin()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// gatehouse runs a gatehouse command to completion and returns its output
// and exit code.
func gatehouse(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return out.String(), exit.ExitCode()
	case err != nil:
		t.Fatalf("gatehouse %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), 0
}

// effectiveConfig is the part of `gatehouse config print` the chart's
// objects must agree with.
type effectiveConfig struct {
	Server struct {
		Admin struct {
			Address          string
			SensitiveAddress string `json:"sensitiveAddress"`
		}
		DrainDelay      string `json:"drainDelay"`
		ShutdownTimeout string `json:"shutdownTimeout"`
		CloseTimeout    string `json:"closeTimeout"`
		TLS             *struct {
			CertFile      string `json:"certFile"`
			KeyFile       string `json:"keyFile"`
			ClientCAFile  string `json:"clientCAFile"`
			SPIFFEBundles []struct {
				File string `json:"file"`
			} `json:"spiffeBundles"`
		} `json:"tls"`
	}
	Authz     *struct{ Address string }
	ExtProc   *struct{ Address string } `json:"extproc"`
	RateLimit *struct{ Address string } `json:"ratelimit"`
	XDS       *struct {
		Address  string
		Services map[string]any
	} `json:"xds"`
	Redis *struct {
		Mode      string
		Addresses []string
		Password  string
	}
	// raw is the whole config, for the walk over file: references.
	raw map[string]any
}

// componentAddresses are the listen addresses of the enabled components.
func (c *effectiveConfig) componentAddresses() map[string]string {
	out := map[string]string{"admin": c.Server.Admin.Address}
	if c.Authz != nil {
		out["authz"] = c.Authz.Address
	}
	if c.ExtProc != nil {
		out["extproc"] = c.ExtProc.Address
	}
	if c.RateLimit != nil {
		out["ratelimit"] = c.RateLimit.Address
	}
	if c.XDS != nil {
		out["xds"] = c.XDS.Address
	}
	return out
}

// printConfig runs `gatehouse config print DIR`: the config as gatehouse
// loaded it, every default filled in.
func printConfig(t *testing.T, dir string) *effectiveConfig {
	t.Helper()
	out, code := gatehouse(t, "config", "print", dir)
	if code != 0 {
		t.Fatalf("gatehouse config print %s: exit %d\n%s", dir, code, out)
	}
	var c effectiveConfig
	if err := yaml.Unmarshal([]byte(out), &c); err != nil {
		t.Fatalf("config print output: %v\n%s", err, out)
	}
	if err := yaml.Unmarshal([]byte(out), &c.raw); err != nil {
		t.Fatal(err)
	}
	return &c
}

// fileRefs lists every "file:PATH" secret reference in the config.
func fileRefs(v any) []string {
	var out []string
	switch x := v.(type) {
	case map[string]any:
		for _, k := range sortedKeys(x) {
			out = append(out, fileRefs(x[k])...)
		}
	case []any:
		for _, e := range x {
			out = append(out, fileRefs(e)...)
		}
	case string:
		if p, ok := strings.CutPrefix(x, "file:"); ok {
			out = append(out, p)
		}
	}
	return out
}

// writeConfigMap lays out a ConfigMap's data as the kubelet mounts it
// (pkg/volume/util/atomic_writer.go): the files in a timestamped hidden
// directory, a "..data" link to it, and one link per key through "..data".
// Called again on the same dir, it swaps the content the way the kubelet
// does: a new timestamped directory, "..data_tmp" renamed over "..data",
// the old directory removed.
func writeConfigMap(t *testing.T, dir string, data map[string]string) {
	t.Helper()
	ts := filepath.Join(dir, fmt.Sprintf("..%s.%d", time.Now().UTC().Format("2006_01_02_15_04_05"), time.Now().UnixNano()))
	if err := os.Mkdir(ts, 0o755); err != nil {
		t.Fatal(err)
	}
	for k, v := range data {
		if err := os.WriteFile(filepath.Join(ts, k), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old, _ := os.Readlink(filepath.Join(dir, "..data"))
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for k := range data {
		link := filepath.Join(dir, k)
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.Symlink(filepath.Join("..data", k), link); err != nil {
			t.Fatal(err)
		}
	}
	// Keys gone from the new data lose their links, as with the kubelet.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if _, ok := data[e.Name()]; !ok && !strings.HasPrefix(e.Name(), "..") {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
	if old != "" {
		if err := os.RemoveAll(filepath.Join(dir, old)); err != nil {
			t.Fatal(err)
		}
	}
}
