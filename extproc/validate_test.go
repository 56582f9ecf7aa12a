package extproc

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/config"
)

// validateFile writes files into a directory, loads gatehouse.yaml from it
// and returns what Validate reports, located as `gatehouse validate`
// prints it.
func validateFile(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := config.Load(filepath.Join(dir, "gatehouse.yaml"), config.LoadOptions{})
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	err = Validate(cfg)
	var errs config.Errors
	if !errors.As(err, &errs) {
		t.Fatalf("Validate = %v (%T); want config.Errors", err, err)
	}
	return strings.ReplaceAll(errs.Located(cfg.Source).Error(), dir+"/", "")
}

func TestValidateBrokenDocuments(t *testing.T) {
	head := "apiVersion: gatehouse/v1\nextproc: {}\nroutes:\n  - id: api\n    match: {prefix: /}\n    extproc:\n"
	tests := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{
			name: "inline syntax error points into the config file",
			files: map[string]string{"gatehouse.yaml": head +
				"      openapi:\n        spec: |\n          openapi: 3.0.3\n          info: {title: x, version: '1'}\n          paths:\n            /a: {get: {responses: {'200': {description: ok}}\n"},
			want: "gatehouse.yaml:13: routes[0].extproc.openapi.spec: cannot parse the document",
		},
		{
			name: "file syntax error points into the document",
			files: map[string]string{
				"gatehouse.yaml": head + "      openapi: {file: api.yaml}\n",
				"api.yaml":       "openapi: 3.0.3\ninfo: {title: x, version: '1'}\npaths:\n  /a:\n    get: [unclosed\n",
			},
			want: "api.yaml:6: routes[0].extproc.openapi.file: cannot parse the document",
		},
		{
			name: "invalid document",
			files: map[string]string{
				"gatehouse.yaml": head + "      openapi: {file: api.yaml}\n",
				"api.yaml":       "openapi: 3.0.3\ninfo: {title: x, version: '1'}\npaths:\n  /a:\n    get: {}\n",
			},
			want: "gatehouse.yaml:7: routes[0].extproc.openapi.file: invalid OpenAPI document",
		},
		{
			name:  "missing file",
			files: map[string]string{"gatehouse.yaml": head + "      openapi: {file: nope.yaml}\n"},
			want:  "gatehouse.yaml:7: routes[0].extproc.openapi.file: cannot read",
		},
		{
			name:  "bad redaction path",
			files: map[string]string{"gatehouse.yaml": head + "      redact: {paths: ['$.a[x]']}\n"},
			want:  "gatehouse.yaml:7: routes[0].extproc.redact.paths: path \"$.a[x]\": [x] is not an index",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := validateFile(t, tc.files)
			if !strings.Contains(got, tc.want) {
				t.Errorf("Validate =\n%s\nwant it to contain\n%s", got, tc.want)
			}
		})
	}
}

func TestValidateGoodConfig(t *testing.T) {
	if err := Validate(testConfig(t, streamConfig)); err != nil {
		t.Errorf("Validate(streamConfig) = %v", err)
	}
}
