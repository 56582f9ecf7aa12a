// Package compose checks docker-compose.yml without a Docker engine: it
// must load with the compose-spec loader (the one docker compose uses),
// build gatehouse from this repository, and mount only files that exist.
package compose

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/gatehouse/gatehouse/cmd/gatehouse/app"
)

func TestComposeFile(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	opts, err := cli.NewProjectOptions(
		[]string{filepath.Join(root, "docker-compose.yml")},
		cli.WithWorkingDirectory(root),
		cli.WithName("gatehouse"),
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		t.Fatalf("compose options: %v", err)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("docker-compose.yml does not load: %v", err)
	}

	for _, name := range []string{"envoy", "gatehouse", "redis", "upstream"} {
		if _, ok := project.Services[name]; !ok {
			t.Errorf("service %q missing", name)
		}
	}

	gh := project.Services["gatehouse"]
	if gh.Build == nil {
		t.Fatal("gatehouse is not built from the repository")
	}
	dockerfile := gh.Build.Dockerfile
	if dockerfile == "" {
		dockerfile = "Dockerfile"
	}
	if !filepath.IsAbs(dockerfile) {
		dockerfile = filepath.Join(gh.Build.Context, dockerfile)
	}
	if _, err := os.Stat(dockerfile); err != nil {
		t.Errorf("gatehouse build: %v", err)
	}

	mounts := 0
	for name, svc := range project.Services {
		for _, v := range svc.Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			mounts++
			rel, err := filepath.Rel(root, v.Source)
			if err != nil || rel == ".." || filepath.IsAbs(rel) || len(rel) > 1 && rel[:2] == ".." {
				t.Errorf("%s mounts %s, outside the repository", name, v.Source)
				continue
			}
			if _, err := os.Stat(v.Source); err != nil {
				t.Errorf("%s mounts %s, which does not exist in the repository", name, rel)
			}
		}
	}
	if mounts == 0 {
		t.Error("no bind mounts found; the envoy bootstrap and gatehouse config must be mounted")
	}

	// The gatehouse config the compose file mounts must be one gatehouse
	// serves: the same checks as `gatehouse validate`.
	var out bytes.Buffer
	if err := app.Main(context.Background(), []string{"validate", "--skip-secrets", filepath.Join(root, "examples", "compose.yaml")}, &out, io.Discard); err != nil {
		t.Errorf("gatehouse validate examples/compose.yaml: %v\n%s", err, out.String())
	}
}
