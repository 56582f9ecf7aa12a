// Package examples checks that every runnable config under examples/ is
// one gatehouse serves: `gatehouse validate` passes with no warning.
package examples

import (
	"bytes"
	"context"
	"io"
	"os"
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

// TestWebhookExampleChecks runs the gatehouse check that
// examples/webhooks.yaml shows: Twilio's worked example is allowed, and
// refused once a byte of its form changes.
func TestWebhookExampleChecks(t *testing.T) {
	t.Setenv("GITHUB_WEBHOOK_SECRET", "x")
	t.Setenv("GITLAB_WEBHOOK_TOKEN", "x")
	t.Setenv("TWILIO_AUTH_TOKEN", "12345")
	t.Setenv("SVIX_WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	form := "Digits=1234&CallSid=CA1234567890ABCDE&To=%2B18005551212&Caller=%2B14158675310&From=%2B14158675310"
	for _, tt := range []struct {
		body  string
		allow bool
	}{{form, true}, {strings.Replace(form, "1234&", "1235&", 1), false}} {
		var out bytes.Buffer
		err := app.Main(context.Background(), []string{"check", "--config", "../../examples/webhooks.yaml", "--route", "twilio-voice",
			"--method", "POST", "--host", "mycompany.com", "--path", "/myapp.php?foo=1&bar=2",
			"-H", "content-type: application/x-www-form-urlencoded", "-H", "x-twilio-signature: GvWf1cFY/Q7PnoempGyD5oXAezc=",
			"--body", tt.body}, &out, io.Discard)
		if got := err == nil && strings.Contains(out.String(), "decision: allow"); got != tt.allow {
			t.Errorf("gatehouse check (body %q) = %v, allowed %t; want allowed %t:\n%s", tt.body, err, got, tt.allow, out.String())
		}
	}
}

// TestPetstoreDirectory: examples/petstore is a config directory with its
// OpenAPI document in openapi/, which is never read as config; the same
// files laid flat (a ConfigMap) validate too, since the route names the
// document; an unnamed document in the directory is refused.
func TestPetstoreDirectory(t *testing.T) {
	validate := func(dir string) (string, error) {
		var out bytes.Buffer
		err := app.Main(context.Background(), []string{"validate", "--skip-secrets", dir}, &out, &out)
		return out.String(), err
	}
	if out, err := validate("../../examples/petstore/"); err != nil || !strings.HasPrefix(out, "ok: ") {
		t.Fatalf("gatehouse validate examples/petstore/ = %v:\n%s", err, out)
	}
	cfg, err := os.ReadFile("../../examples/petstore/gatehouse.yaml")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../../examples/petstore/openapi/petstore.yaml")
	if err != nil {
		t.Fatal(err)
	}
	flat := t.TempDir()
	write := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join(flat, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("gatehouse.yaml", bytes.Replace(cfg, []byte("file: openapi/petstore.yaml"), []byte("file: petstore.yaml"), 1))
	write("petstore.yaml", doc)
	if out, err := validate(flat); err != nil || !strings.HasPrefix(out, "ok: ") {
		t.Fatalf("gatehouse validate on the flat layout = %v:\n%s", err, out)
	}
	write("unnamed.yaml", doc)
	if out, err := validate(flat); err == nil || !strings.Contains(out, "unnamed.yaml:1: apiVersion: this is an OpenAPI document") {
		t.Fatalf("gatehouse validate with an unnamed document = %v:\n%s", err, out)
	}
}
