package app

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRenderRefusesWhatServeRefuses: render promises the validation serve
// runs, so a config that only another component rejects (here extproc, for
// a broken OpenAPI document) must not render with exit status 0.
func TestRenderRefusesWhatServeRefuses(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"broken.json": "openapi: [\n",
		"gatehouse.yaml": `apiVersion: gatehouse/v1
extproc: {}
xds: {}
listeners:
  - {name: public, address: 0.0.0.0:10000}
clusters:
  - {name: app, endpoints: [{address: 127.0.0.1:8000}]}
routes:
  - id: orders
    match: {prefix: /orders}
    cluster: app
    extproc: {openapi: {file: broken.json}}
`,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	err := Main(context.Background(), []string{"render", filepath.Join(dir, "gatehouse.yaml")}, &out, io.Discard)
	var exit *ExitError
	if !errors.As(err, &exit) || exit.Code != 1 {
		t.Fatalf("render(broken OpenAPI document) = %v\n%s\nwant exit status 1", err, out.String())
	}
	if !strings.Contains(out.String(), "routes[0].extproc.openapi.file: cannot parse the document") {
		t.Errorf("render printed:\n%s\nwant the extproc error with its location", out.String())
	}
}
