package quota

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

func fileNames(files []EnvoyFile, root string) string {
	var out []string
	for _, f := range files {
		rel, _ := filepath.Rel(root, f.Name)
		out = append(out, rel+"="+strings.TrimSpace(string(f.Data)))
	}
	return strings.Join(out, " ")
}

// TestReadRuntimeFiles reads the reference's runtime directory: every file
// of root/subdirectory/appDirectory whatever its name, nested directories
// too, a ConfigMap's keys once each (never its ..data internals), dot
// files unless ignored.
func TestReadRuntimeFiles(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "ratelimit", "config")
	swap := testenv.ConfigMap(t, dir)
	swap(map[string]string{"shop.yaml": "v1", "rules": "r1"})
	if err := os.MkdirAll(filepath.Join(dir, "team"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "team", "a.yml"), []byte("a"), 0o644)
	os.WriteFile(filepath.Join(dir, ".hidden.yaml"), []byte("h"), 0o644)

	rt := &config.RateLimitRuntime{Root: root, Subdirectory: "ratelimit", AppDirectory: "config"}
	files, errs := ReadRuntimeFiles(rt)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if got, want := fileNames(files, dir), ".hidden.yaml=h rules=r1 shop.yaml=v1 team/a.yml=a"; got != want {
		t.Errorf("files = %s; want %s", got, want)
	}
	rt.IgnoreDotFiles = true
	files, _ = ReadRuntimeFiles(rt)
	if got, want := fileNames(files, dir), "rules=r1 shop.yaml=v1 team/a.yml=a"; got != want {
		t.Errorf("ignoring dot files: files = %s; want %s", got, want)
	}
	swap(map[string]string{"shop.yaml": "v2", "rules": "r2"})
	files, _ = ReadRuntimeFiles(rt)
	if got, want := fileNames(files, dir), "rules=r2 shop.yaml=v2 team/a.yml=a"; got != want {
		t.Errorf("after the ..data swap: files = %s; want %s", got, want)
	}

	empty := &config.RateLimitRuntime{Root: t.TempDir(), AppDirectory: "."}
	if files, errs := ReadRuntimeFiles(empty); len(errs) > 0 || len(files) != 0 {
		t.Errorf("empty directory: %v, %v; want no file and no error", files, errs)
	}
	missing := &config.RateLimitRuntime{Root: filepath.Join(root, "nope"), AppDirectory: "config"}
	if _, errs := ReadRuntimeFiles(missing); len(errs) == 0 || !strings.Contains(errs.Error(), "no such file") {
		t.Errorf("missing directory: %v; want an error", errs)
	}
}
