package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// ConfigMap makes dir a Kubernetes ConfigMap volume as the kubelet mounts
// one, and returns the function that writes (and later swaps) its
// contents the way the kubelet does: the files in a new timestamped
// directory, ..data, a symlink to it, replaced by a rename, and each key a
// symlink through ..data; the previous directory is removed.
func ConfigMap(t testing.TB, dir string) func(files map[string]string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	gen := 0
	var last string
	return func(files map[string]string) {
		t.Helper()
		gen++
		ts := fmt.Sprintf("..2026_01_01_00_00_%02d.%d", gen%60, gen)
		if err := os.MkdirAll(filepath.Join(dir, ts), 0o755); err != nil {
			t.Fatal(err)
		}
		for name, body := range files {
			if err := os.WriteFile(filepath.Join(dir, ts, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(ts, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
		for name := range files {
			link := filepath.Join(dir, name)
			if _, err := os.Lstat(link); err != nil {
				if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
					t.Fatal(err)
				}
			}
		}
		if last != "" {
			_ = os.RemoveAll(filepath.Join(dir, last))
		}
		last = ts
	}
}
