package config

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const petsDoc = "openapi: 3.0.3\ninfo: {title: Pets, version: '1'}\npaths: {}\n"

func routeWithDoc(file string) string {
	return "apiVersion: gatehouse/v1\nextproc: {}\nroutes:\n  - id: pets\n    match: {prefix: /v1}\n    extproc:\n      openapi: {file: " + file + "}\n"
}

// TestDocumentsBesideConfig: an OpenAPI document has a home beside the
// config that the loader never reads as config: the openapi/ subfolder (any
// subfolder: the loader does not recurse), or the config directory itself
// when a route names the file. A document nobody names is still refused,
// with a message that says where documents go.
func TestDocumentsBesideConfig(t *testing.T) {
	t.Run("subfolder", func(t *testing.T) {
		dir := write(t, map[string]string{"gatehouse.yaml": routeWithDoc("openapi/pets.yaml"), "openapi/pets.yaml": petsDoc})
		cfg, err := Load(dir, LoadOptions{})
		if err != nil {
			t.Fatalf("Load = %v", err)
		}
		if got := cfg.Routes[0].ExtProc.OpenAPI.File.String(); got != filepath.Join(dir, "openapi/pets.yaml") {
			t.Errorf("openapi.file = %s; want it resolved beside the config", got)
		}
		if !slices.Contains(cfg.Source.InputFiles(), filepath.Join(dir, "openapi/pets.yaml")) {
			t.Errorf("InputFiles = %v; want the document watched", cfg.Source.InputFiles())
		}
	})
	t.Run("named in the config directory", func(t *testing.T) {
		// A Kubernetes ConfigMap mounts flat: the document sits beside the
		// config files.
		dir := write(t, map[string]string{"gatehouse.yaml": routeWithDoc("pets.openapi.yaml"), "pets.openapi.yaml": petsDoc})
		cfg, err := Load(dir, LoadOptions{})
		if err != nil {
			t.Fatalf("Load = %v", err)
		}
		if len(cfg.Source.Files) != 1 || filepath.Base(cfg.Source.Files[0]) != "gatehouse.yaml" {
			t.Errorf("Source.Files = %v; want only the config file", cfg.Source.Files)
		}
	})
	t.Run("named with ./ and by a second config file", func(t *testing.T) {
		dir := write(t, map[string]string{
			"00-base.yaml":   "apiVersion: gatehouse/v1\nextproc: {}\n",
			"10-routes.yaml": strings.Replace(routeWithDoc("./pets.yaml"), "extproc: {}\n", "", 1),
			"pets.yaml":      petsDoc,
		})
		if _, err := Load(dir, LoadOptions{}); err != nil {
			t.Fatalf("Load = %v", err)
		}
	})
	t.Run("document nobody names is refused", func(t *testing.T) {
		dir := write(t, map[string]string{"gatehouse.yaml": "apiVersion: gatehouse/v1\n", "pets.yaml": petsDoc})
		_, err := Load(dir, LoadOptions{})
		if err == nil || !strings.Contains(err.Error(), "pets.yaml:1: apiVersion: this is an OpenAPI document, not a gatehouse config file") {
			t.Fatalf("Load = %v; want the document refused, saying where documents go", err)
		}
	})
	t.Run("mistyped config file is still refused", func(t *testing.T) {
		dir := write(t, map[string]string{"gatehouse.yaml": routeWithDoc("openapi/pets.yaml"), "openapi/pets.yaml": petsDoc,
			"extra.yaml": "apiVersoin: gatehouse/v1\nroutes: []\n"})
		if _, err := Load(dir, LoadOptions{}); err == nil || !strings.Contains(err.Error(), "extra.yaml:1: apiVersion: missing") {
			t.Fatalf("Load = %v; want extra.yaml refused", err)
		}
	})
	t.Run("a named file that is a config is not hidden", func(t *testing.T) {
		// Naming a config file as a document must not make the loader
		// skip a config: only files that are not configs are skipped.
		dir := write(t, map[string]string{"gatehouse.yaml": routeWithDoc("other.yaml"), "other.yaml": "apiVersion: gatehouse/v1\nserver: {shutdownTimeout: 3s}\n"})
		cfg, err := Load(dir, LoadOptions{})
		if err != nil {
			t.Fatalf("Load = %v", err)
		}
		if len(cfg.Source.Files) != 2 {
			t.Errorf("Source.Files = %v; want both config files", cfg.Source.Files)
		}
	})
}
