// Package harness runs gatehouse the way a mesh does, for end-to-end tests:
// a real Envoy 1.40 configured over ADS by `gatehouse serve` (built from
// this tree), calling gatehouse's ext_authz, ext_proc and rate limit
// services, in front of upstream HTTP servers written in Go, with a private
// redis-server when the config needs one. Everything listens on free
// loopback ports and is stopped when the test ends.
//
// A test writes its gatehouse config as a text/template; the harness fills
// in the addresses it allocated (see Addrs) and starts, in order: Redis,
// the upstreams, the gatehouse replicas, then Envoy with
// envoy/bootstrap.yaml (node id and cluster, the xDS address and the admin
// port substituted, nothing else changed). Start returns once Envoy is
// ready, has ACKed every resource gatehouse sent it, and its listeners
// accept connections.
//
// Envoy's admin API (/stats, /config_dump) is the second witness beside
// what the client and the upstream see.
package harness

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"text/template"
	"time"

	"github.com/gatehouse/gatehouse/internal/testenv"
)

// Options describe one mesh.
type Options struct {
	// Config is the gatehouse config, a text/template over Addrs.
	Config string
	// Replicas is how many gatehouse processes run on the same config
	// (default 1). Envoy's ADS stream goes to the first; the others serve
	// ext_authz, ext_proc and the rate limit service beside it.
	Replicas int
	// Upstreams names the upstream HTTP servers to start ({{.Upstream
	// "name"}} in Config). An upstream called "broken" answers 500 to
	// everything, for outlier detection.
	Upstreams []string
	// Redis starts a private redis-server ({{.Redis}}) the test may kill
	// and restart.
	Redis bool
	// Delta makes Envoy use Delta xDS (api_type DELTA_GRPC) rather than
	// State-of-the-World.
	Delta bool
	// NodeID and NodeCluster are Envoy's node identity; default
	// envoy-e2e-1 and the bootstrap's own cluster (edge).
	NodeID, NodeCluster string
	// Listeners is how many Envoy listeners must be active before Start
	// returns (default 1).
	Listeners int
	// Files are written beside the config before anything starts
	// ({{.File "name"}} is the path of one).
	Files map[string]string
	// Components, when set, is each replica's --components (e.g.
	// "xds,extproc,ratelimit" and "authz": the authz of replica 1 can
	// then be stopped alone). Replica 0 must serve xds.
	Components []string
	// TLS makes a PKI for the test (see PKI) and runs Envoy on
	// envoy/bootstrap-tls.yaml. The config must then serve mTLS with the
	// PKI's files ({{.PKI.Dir}}), admit the harness's admin client for
	// the admin server and put the sensitive pages on
	// {{.AdminSensitive}}, where the harness reads /xds/nodes.
	TLS bool
}

// Mesh is one running mesh.
type Mesh struct {
	// PKI is the test's certificates when Options.TLS is set.
	PKI       *PKI
	t         testing.TB
	opts      Options
	dir       string
	addrs     []*Addrs // one per replica
	Redis     *testenv.RedisProcess
	Upstreams map[string]*Upstream
	Gatehouse []*Gatehouse
	Envoy     *Envoy
	// static: addresses only, nothing started (RenderStatic).
	static bool
}

// Addrs are the addresses a config template can use. Fields are those of
// the replica the config is written for; Replica(i) reaches the others.
type Addrs struct {
	Admin, Authz, ExtProc, RateLimit, XDS string
	// AdminSensitive is a free port for server.admin.sensitiveAddress.
	AdminSensitive string
	// Listener and Listener2 are free ports for Envoy listeners.
	Listener, Listener2 string
	// EnvoyAdmin is Envoy's admin address.
	EnvoyAdmin string
	m          *Mesh
	index      int
}

// Upstream returns the address of a named upstream.
func (a *Addrs) Upstream(name string) (string, error) {
	u, ok := a.m.Upstreams[name]
	if !ok {
		return "", fmt.Errorf("harness: no upstream %q in Options.Upstreams", name)
	}
	return u.Addr, nil
}

// Redis returns the private redis-server's address.
func (a *Addrs) Redis() (string, error) {
	if a.m.static {
		return "127.0.0.1:6379", nil
	}
	if a.m.Redis == nil {
		return "", fmt.Errorf("harness: the config uses {{.Redis}} but Options.Redis is false")
	}
	return a.m.Redis.Addr(), nil
}

// Replica returns the addresses of replica i.
func (a *Addrs) Replica(i int) (*Addrs, error) {
	if i < 0 || i >= len(a.m.addrs) {
		return nil, fmt.Errorf("harness: no replica %d (Options.Replicas is %d)", i, len(a.m.addrs))
	}
	return a.m.addrs[i], nil
}

// Index is the replica's index (0 for the one Envoy's ADS stream uses).
func (a *Addrs) Index() int { return a.index }

// File returns the path of a file of Options.Files.
func (a *Addrs) File(name string) (string, error) {
	if _, ok := a.m.opts.Files[name]; !ok {
		return "", fmt.Errorf("harness: no file %q in Options.Files", name)
	}
	return filepath.Join(a.m.dir, "files", name), nil
}

// PKI is the test's certificates (Options.TLS).
func (a *Addrs) PKI() (*PKI, error) {
	if a.m.PKI == nil {
		return nil, fmt.Errorf("harness: the config uses {{.PKI}} but Options.TLS is false")
	}
	return a.m.PKI, nil
}

// Repo is the repository's root (for examples and demo keys).
func (a *Addrs) Repo() string { return RepoRoot() }

// RepoRoot returns the repository's root directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Start starts a mesh and returns when Envoy has its config and serves it.
func Start(t testing.TB, opts Options) *Mesh {
	t.Helper()
	envoyBin := testenv.Envoy(t)
	if opts.Replicas == 0 {
		opts.Replicas = 1
	}
	if opts.Listeners == 0 {
		opts.Listeners = 1
	}
	if opts.NodeID == "" {
		opts.NodeID = "envoy-e2e-1"
	}
	m := newMesh(t, opts, false)
	bin := Binary(t)
	for i := range m.addrs {
		cfg, err := m.Render(opts.Config, i)
		if err != nil {
			t.Fatalf("harness: config template: %v", err)
		}
		var components string
		if i < len(opts.Components) {
			components = opts.Components[i]
		}
		g := newGatehouse(t, bin, filepath.Join(m.dir, "gatehouse-"+strconv.Itoa(i)), cfg, m.addrs[i].Admin, components)
		if m.PKI != nil {
			g.sensitive, g.sensitiveClient = "https://"+m.addrs[i].AdminSensitive, m.PKI.AdminClient()
		}
		g.Start()
		t.Cleanup(g.Stop)
		m.Gatehouse = append(m.Gatehouse, g)
	}
	eo := envoyOptions{
		nodeID: opts.NodeID, nodeCluster: opts.NodeCluster, xds: m.addrs[0].XDS, admin: m.addrs[0].EnvoyAdmin, delta: opts.Delta,
	}
	if m.PKI != nil {
		eo.tls = m.PKI.envoyTLS()
	}
	m.Envoy = startEnvoy(t, envoyBin, filepath.Join(m.dir, "envoy"), eo)
	m.WaitSynced(opts.Listeners)
	return m
}

// newMesh starts Redis and the upstreams (or, static, only allocates their
// addresses), writes the files and allocates every address.
func newMesh(t testing.TB, opts Options, static bool) *Mesh {
	t.Helper()
	m := &Mesh{t: t, opts: opts, dir: t.TempDir(), Upstreams: map[string]*Upstream{}, static: static}
	if opts.Redis && !static {
		m.Redis = testenv.StartRedis(t)
	}
	if opts.TLS {
		m.PKI = newPKI(t, filepath.Join(m.dir, "pki"))
	}
	for _, name := range opts.Upstreams {
		if static {
			m.Upstreams[name] = &Upstream{Name: name, Addr: freeAddr(t)}
		} else {
			m.Upstreams[name] = StartUpstream(t, name, name == "broken")
		}
	}
	if len(opts.Files) > 0 {
		if err := os.MkdirAll(filepath.Join(m.dir, "files"), 0o755); err != nil {
			t.Fatal(err)
		}
		for name, body := range opts.Files {
			if err := os.WriteFile(filepath.Join(m.dir, "files", name), []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	listener, listener2, envoyAdmin := freeAddr(t), freeAddr(t), freeAddr(t)
	for i := 0; i < opts.Replicas; i++ {
		m.addrs = append(m.addrs, &Addrs{
			Admin: freeAddr(t), Authz: freeAddr(t), ExtProc: freeAddr(t), RateLimit: freeAddr(t), XDS: freeAddr(t), AdminSensitive: freeAddr(t),
			Listener: listener, Listener2: listener2, EnvoyAdmin: envoyAdmin, m: m, index: i,
		})
	}
	return m
}

// RenderStatic fills a config template as Start would, without starting
// anything: for checking the configs the tests use (envoy --mode validate).
// Files are written to a temporary directory.
func RenderStatic(t testing.TB, opts Options) []string {
	t.Helper()
	if opts.Replicas == 0 {
		opts.Replicas = 1
	}
	m := newMesh(t, opts, true)
	var out []string
	for i := range m.addrs {
		cfg, err := m.Render(opts.Config, i)
		if err != nil {
			t.Fatalf("harness: config template: %v", err)
		}
		out = append(out, cfg)
	}
	return out
}

// Render fills a config template with replica i's addresses.
func (m *Mesh) Render(text string, i int) (string, error) {
	tmpl, err := template.New("config").Option("missingkey=error").Parse(text)
	if err != nil {
		return "", err
	}
	var b bytes.Buffer
	if err := tmpl.Execute(&b, m.addrs[i]); err != nil {
		return "", err
	}
	return b.String(), nil
}

// Addrs returns replica i's addresses.
func (m *Mesh) Addrs(i int) *Addrs { return m.addrs[i] }

// URL is the base URL of Envoy's first listener.
func (m *Mesh) URL() string { return "http://" + m.addrs[0].Listener }

// Reload rewrites every replica's config from the template and reloads it
// (SIGHUP), then waits until Envoy has ACKed what gatehouse pushed.
func (m *Mesh) Reload(config string) {
	m.t.Helper()
	for i, g := range m.Gatehouse {
		cfg, err := m.Render(config, i)
		if err != nil {
			m.t.Fatalf("harness: config template: %v", err)
		}
		g.Reload(cfg)
	}
	m.WaitSynced(m.opts.Listeners)
}

// WaitSynced waits until the ADS replica reports Envoy in sync on every
// resource type, Envoy's config_dump holds the same versions, and Envoy
// has listeners active and accepting connections.
func (m *Mesh) WaitSynced(listeners int) {
	m.t.Helper()
	g := m.Gatehouse[0]
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		last = m.syncState(g, listeners)
		if last == "" {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	m.t.Fatalf("harness: Envoy did not sync with gatehouse within 30s: %s\n%s", last, m.Envoy.LogTail(30))
}

// syncState is "" once in sync, else what is missing.
func (m *Mesh) syncState(g *Gatehouse, listeners int) string {
	if !m.Envoy.Ready() {
		return "Envoy's /ready is not LIVE"
	}
	node, err := g.Node(m.opts.NodeID)
	if err != nil {
		return err.Error()
	}
	if !node.Connected {
		return "node not connected"
	}
	dump, err := m.Envoy.Versions()
	if err != nil {
		return err.Error()
	}
	for typ, st := range node.Types {
		if st.Acked == "" || st.Acked != st.Current {
			return fmt.Sprintf("%s: acked %q, current %q", typ, st.Acked, st.Current)
		}
		if got := dump[typ]; got != "" && got != st.Acked && !m.opts.Delta {
			// Delta carries no type-wide version; config_dump then shows
			// per-resource versions, compared in the tests that need them.
			return fmt.Sprintf("%s: Envoy's config_dump has version %q, gatehouse says %q", typ, got, st.Acked)
		}
	}
	if len(node.Types) < 3 {
		return fmt.Sprintf("only %d resource types sent", len(node.Types))
	}
	active := m.Envoy.Stat("listener_manager.total_listeners_active")
	warming := m.Envoy.Stat("listener_manager.total_listeners_warming")
	if active < int64(listeners) || warming != 0 {
		return fmt.Sprintf("listeners active %d (want %d), warming %d", active, listeners, warming)
	}
	c, err := net.DialTimeout("tcp", m.addrs[0].Listener, time.Second)
	if err != nil {
		return "listener does not accept: " + err.Error()
	}
	c.Close()
	return ""
}

// freeAddr returns a loopback address whose port is free right now.
func freeAddr(t testing.TB) string { return testenv.FreeAddr(t) }

// waitFor polls cond until it is true or the time is up.
func waitFor(ctx context.Context, every time.Duration, cond func() bool) bool {
	for {
		if cond() {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(every):
		}
	}
}

// DemoJWKS is the demo issuer's key set, for configs that hold it inline.
func (a *Addrs) DemoJWKS() string { return DemoJWKS }
