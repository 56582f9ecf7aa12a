package render_test

import (
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/gatehouse/gatehouse/xds/render"
)

// TestYAMLKeepsStringsStrings: a string value that a YAML reader would
// take for a boolean or a number stays quoted, so that the rendered YAML
// means what the resource holds. Envoy's loader reads yes/no/on/off as
// booleans (YAML 1.1).
func TestYAMLKeepsStringsStrings(t *testing.T) {
	for _, v := range []string{"yes", "No", "on", "OFF", "y", "true", "123", "null"} {
		b, err := render.Message(&corev3.HeaderValue{Key: "x-v", Value: v}, render.YAML)
		if err != nil {
			t.Fatal(err)
		}
		if want := "value: \"" + v + "\""; !strings.Contains(string(b), want) {
			t.Errorf("Message(header value %q) = %q; want it to contain %s", v, b, want)
		}
	}
	b, err := render.Message(&corev3.HeaderValue{Key: "x-v", Value: "prod"}, render.YAML)
	if err != nil {
		t.Fatal(err)
	}
	if want := "value: prod\n"; !strings.Contains(string(b), want) {
		t.Errorf("Message(header value prod) = %q; want it unquoted", b)
	}
}
