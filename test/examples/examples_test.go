// Package examples checks that every runnable config under examples/ is
// one gatehouse serves: `gatehouse validate` passes with no warning.
package examples

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/cmd/gatehouse/app"
)

func TestEveryExampleValidates(t *testing.T) {
	files, err := filepath.Glob("../../examples/*.yaml")
	if err != nil || len(files) < 3 {
		t.Fatalf("examples: %v, %v", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			var out bytes.Buffer
			// Secrets are references to the environment of a deployment.
			err := app.Main(context.Background(), []string{"validate", "--skip-secrets", f}, &out, io.Discard)
			if err != nil || !strings.HasPrefix(out.String(), "ok: ") {
				t.Fatalf("gatehouse validate %s = %v:\n%s", f, err, out.String())
			}
		})
	}
}
