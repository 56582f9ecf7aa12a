package chartcheck

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	certmanagerv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/google/go-cmp/cmp"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	chartv2 "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
)

var update = flag.Bool("update", false, "rewrite testdata/golden from the rendered chart (and delete stale files)")

const (
	chartDir    = "../gatehouse"
	releaseName = "edge"
	namespace   = "mesh"
)

// scheme holds exactly the kinds the chart may render. A kind outside it
// (a typo in apiVersion, a removed API version) fails the decode.
var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, policyv1.AddToScheme,
		autoscalingv2.AddToScheme, networkingv1.AddToScheme, monitoringv1.AddToScheme,
		certmanagerv1.AddToScheme,
	} {
		utilruntime.Must(add(s))
	}
	return s
}()

// strict decodes YAML into the registered Go type of its apiVersion and
// kind, failing on an unknown or duplicated field, as the API server's
// strict field validation does.
var strict = json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme, scheme,
	json.SerializerOptions{Yaml: true, Strict: true})

// rendered is one render of the chart: the template outputs by file name
// and the objects decoded from them.
type rendered struct {
	files   map[string]string
	objects []runtime.Object
}

// loadChart loads the chart directory as `helm install` would.
func loadChart(t *testing.T) *chartv2.Chart {
	t.Helper()
	ch, err := loader.LoadDir(chartDir)
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	return ch
}

// renderChart renders the chart with the values of a value set as `helm template` does: values coalesced with the
// chart's and checked against values.schema.json, templates executed in
// strict mode (a reference to a missing value is an error).
func renderChart(t *testing.T, valueSet string) (map[string]string, error) {
	t.Helper()
	return renderValues(t, readValues(t, valueSet))
}

// readValues reads testdata/values/<valueSet>.yaml.
func readValues(t *testing.T, valueSet string) map[string]any {
	t.Helper()
	p := filepath.Join("testdata", "values", valueSet+".yaml")
	vals, err := common.ReadValuesFile(p)
	if err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	return vals
}

func renderValues(t *testing.T, vals map[string]any) (map[string]string, error) {
	t.Helper()
	ch := loadChart(t)
	opts := common.ReleaseOptions{Name: releaseName, Namespace: namespace, Revision: 1, IsInstall: true}
	rv, err := util.ToRenderValuesWithSchemaValidation(ch, vals, opts, common.DefaultCapabilities, false)
	if err != nil {
		return nil, err
	}
	return engine.Engine{Strict: true}.Render(ch, rv)
}

// decodeAll splits every rendered manifest into documents and decodes each
// strictly. NOTES.txt and helpers are not manifests.
func decodeAll(t *testing.T, files map[string]string) []runtime.Object {
	t.Helper()
	var objs []runtime.Object
	for _, name := range sortedKeys(files) {
		if !strings.HasSuffix(name, ".yaml") {
			continue
		}
		for i, doc := range splitDocuments(files[name]) {
			obj, gvk, err := strict.Decode([]byte(doc), nil, nil)
			if err != nil {
				t.Errorf("%s, document %d: %v\n%s", name, i, err, doc)
				continue
			}
			if gvk.Kind == "" || gvk.Version == "" {
				t.Errorf("%s, document %d: no apiVersion/kind", name, i)
			}
			objs = append(objs, obj)
		}
	}
	return objs
}

// splitDocuments returns the non-empty YAML documents of a manifest.
func splitDocuments(s string) []string {
	var docs []string
	for _, d := range strings.Split("\n"+s, "\n---") {
		if strings.TrimSpace(stripComments(d)) != "" {
			docs = append(docs, d)
		}
	}
	return docs
}

func stripComments(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

func render(t *testing.T, valueSet string) rendered {
	t.Helper()
	files, err := renderChart(t, valueSet)
	if err != nil {
		t.Fatalf("render %s: %v", valueSet, err)
	}
	return rendered{files: files, objects: decodeAll(t, files)}
}

// golden compares the manifests with testdata/golden/<name>.yaml, or
// rewrites it with -update.
func golden(t *testing.T, name string, files map[string]string) {
	t.Helper()
	var b bytes.Buffer
	for _, f := range sortedKeys(files) {
		if strings.TrimSpace(files[f]) == "" || strings.HasSuffix(f, "NOTES.txt") {
			continue
		}
		fmt.Fprintf(&b, "---\n# Source: %s\n%s\n", f, strings.TrimSpace(files[f]))
	}
	path := filepath.Join("testdata", "golden", name+".yaml")
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("%v (run go test -update to write it)", err)
		return
	}
	if !bytes.Equal(want, b.Bytes()) {
		t.Errorf("rendered chart differs from %s; review the change and run `go test -update` in deploy/helm/chartcheck:\n%s",
			path, cmp.Diff(string(want), b.String()))
	}
}

// removeStaleGolden deletes golden files no value set produces any more.
func removeStaleGolden(t *testing.T, keep map[string]bool) {
	t.Helper()
	paths, _ := filepath.Glob(filepath.Join("testdata", "golden", "*.yaml"))
	for _, p := range paths {
		if !keep[strings.TrimSuffix(filepath.Base(p), ".yaml")] {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
