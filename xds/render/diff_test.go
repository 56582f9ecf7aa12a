package render_test

import (
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/xds/render"
	"github.com/gatehouse/gatehouse/xds/translate"
)

const diffHead = `apiVersion: gatehouse/v1
xds: {}
listeners:
  - {name: public, address: 0.0.0.0:8080}
clusters:
  - {name: c, endpoints: [{address: 10.0.0.1:80}]}
routes:
`

func resources(t *testing.T, routes ...string) *translate.Resources {
	t.Helper()
	yaml := diffHead
	for _, r := range routes {
		yaml += "  - " + r + "\n"
	}
	cfg, err := config.LoadBytes("gatehouse.yaml", []byte(yaml), config.LoadOptions{})
	if err != nil {
		t.Fatalf("LoadBytes() = %v", err)
	}
	res, err := translate.Translate(cfg)
	if err != nil {
		t.Fatalf("Translate() = %v", err)
	}
	return res
}

const (
	routeAll   = "{id: all, match: {prefix: /}, cluster: c}"
	routeUsers = "{id: users, match: {prefix: /users}, cluster: c}"
	routeNew   = "{id: new, match: {path: /new}, cluster: c}"
)

// TestDiffRouteOrder: first match wins, so swapping two routes changes
// what Envoy does although no route's fields change; the diff must show
// it. A route inserted before the others shifts them but moves none.
func TestDiffRouteOrder(t *testing.T) {
	tests := []struct {
		name      string
		old, cur  []string
		want      []string
		wantEmpty bool
	}{
		{name: "same", old: []string{routeAll, routeUsers}, cur: []string{routeAll, routeUsers}, wantEmpty: true},
		{
			name: "swapped",
			old:  []string{routeAll, routeUsers},
			cur:  []string{routeUsers, routeAll},
			want: []string{"~ route users (#1 of virtual host *, routes/public): moved, was #2", "0 added, 0 removed, 1 changed"},
		},
		{
			name: "inserted first",
			old:  []string{routeAll, routeUsers},
			cur:  []string{routeNew, routeAll, routeUsers},
			want: []string{"+ route new (#1 of virtual host *, routes/public)", "1 added, 0 removed, 0 changed"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := render.Diff(resources(t, tt.old...), resources(t, tt.cur...))
			if err != nil {
				t.Fatalf("Diff() = %v", err)
			}
			if tt.wantEmpty != (got == "") {
				t.Fatalf("Diff() = %q; want empty = %v", got, tt.wantEmpty)
			}
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("Diff() =\n%s\nwant it to contain %q", got, w)
				}
			}
		})
	}
}
