package examples

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/cmd/gatehouse/app"
)

// TestMTLSExampleChecks runs the gatehouse checks that examples/mtls.yaml
// shows: the same demo certificates decided differently by its routes.
func TestMTLSExampleChecks(t *testing.T) {
	for _, tt := range []struct {
		route, cert string
		want        string
	}{
		{"payments", "web", "reason:   allowed"},
		{"payments", "partner-app", "reason:   mtls_untrusted"},
		{"partners", "partner-app", "reason:   allowed"},
		{"partners", "impostor", "reason:   mtls_untrusted"},
		{"status", "impostor", "reason:   allowed"},
	} {
		var out bytes.Buffer
		_ = app.Main(context.Background(), []string{"check", "--config", "../../examples/mtls.yaml", "--route", tt.route,
			"--cert", "../../examples/demo/spiffe/" + tt.cert + ".pem"}, &out, io.Discard)
		if !strings.Contains(out.String(), tt.want) {
			t.Errorf("gatehouse check --route %s --cert %s.pem:\n%s\nwant %q", tt.route, tt.cert, out.String(), tt.want)
		}
	}
}
