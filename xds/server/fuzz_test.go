package server

import (
	"testing"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/xds/snapshot"
	"github.com/gatehouse/gatehouse/xds/translate"
)

// FuzzMapDetail: a NACK's error detail comes from the network; mapping it
// back to config names must never fail, and names only what exists.
func FuzzMapDetail(f *testing.F) {
	f.Add("Error adding/updating listener(s) listener/public: route 'orders' has no cluster")
	f.Add("")
	f.Add("\x00\xff/./-*")
	cfg, err := config.LoadBytes("f.yaml", []byte(`apiVersion: gatehouse/v1
xds: {}
listeners: [{name: public, address: 0.0.0.0:8080}]
clusters: [{name: orders, endpoints: [{address: 10.0.0.1:80}]}]
routes: [{id: orders, match: {prefix: /}, cluster: orders}]
`), config.LoadOptions{})
	if err != nil {
		f.Fatal(err)
	}
	res, err := translate.Translate(cfg)
	if err != nil {
		f.Fatal(err)
	}
	set, err := snapshot.Build(cfg, res)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, detail string) {
		for _, o := range mapDetail(set, truncate(detail)) {
			if o.Name == "" || o.Path == "" {
				t.Errorf("mapDetail(%q) gave an origin without name or path: %+v", detail, o)
			}
		}
	})
}
