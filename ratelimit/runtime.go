package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse/gatehouse/internal/component"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/ratelimit/limiter"
	"github.com/gatehouse/gatehouse/ratelimit/quota"
	"github.com/gatehouse/gatehouse/ratelimit/store"
)

// runtime owns what outlives one config: the store, the limiter, the
// watcher of envoy config files.
type runtime struct {
	deps    component.Deps
	log     *slog.Logger
	lim     *limiter.Limiter
	storeM  *store.Metrics
	memory  *store.Memory // the in-process store, kept across reloads
	envoyRe *prometheus.CounterVec

	mu        sync.Mutex // serialises commits and envoy file reloads
	cfg       *config.Config
	storeOpts store.RedisOptions
	watcher   *fsnotify.Watcher
	watched   []string
	// watchedReal are the watched paths with symlinks resolved.
	watchedReal []string
	stop        chan struct{}
	wg          sync.WaitGroup
	closed      bool
}

func newRuntime(cfg *config.Config, deps component.Deps) (*runtime, error) {
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Metrics == nil {
		deps.Metrics = prometheus.NewRegistry()
	}
	lm, err := limiter.NewMetrics(deps.Metrics)
	if err != nil {
		return nil, fmt.Errorf("ratelimit: metrics: %w", err)
	}
	sm, err := store.NewMetrics(deps.Metrics)
	if err != nil {
		return nil, fmt.Errorf("ratelimit: metrics: %w", err)
	}
	rt := &runtime{
		deps:   deps,
		log:    deps.Logger,
		storeM: sm,
		stop:   make(chan struct{}),
		envoyRe: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_ratelimit_envoy_config_reloads_total",
			Help: "Reloads of envoyConfigs files after they changed, by result (applied, rejected: the last good config kept serving).",
		}, []string{"result"}),
	}
	if err := deps.Metrics.Register(rt.envoyRe); err != nil {
		return nil, fmt.Errorf("ratelimit: metrics: %w", err)
	}
	cache := store.NewOverLimitCache(cfg.RateLimit.LocalCache.MaxEntries)
	rt.lim = limiter.New(rt.log, lm, cache, deps.KeyPrefix)
	if deps.Redis == nil {
		rt.memory = store.NewMemory(0)
	}
	return rt, nil
}

func storeOptions(rl *config.RateLimit, keyPrefix string, m *store.Metrics) store.RedisOptions {
	return store.RedisOptions{
		Timeout:   rl.Store.Timeout.D(),
		BatchSize: rl.Store.BatchSize,
		Pipelines: rl.Store.Pipelines,
		Breaker: store.BreakerOptions{
			Failures: rl.Store.Breaker.Failures,
			OpenFor:  rl.Store.Breaker.OpenFor.D(),
			Probes:   rl.Store.Breaker.Probes,
		},
		Wait: store.WaitOptions{
			Replicas: rl.Store.Wait.Replicas,
			Timeout:  rl.Store.Wait.Timeout.D(),
		},
		KeyPrefix: keyPrefix,
		Metrics:   m,
	}
}

// prepare compiles cfg; the returned commit swaps it in.
func (rt *runtime) prepare(cfg *config.Config) (func(), error) {
	if cfg.RateLimit == nil {
		return nil, errors.New("ratelimit: the config has no ratelimit section")
	}
	snap, err := quota.Compile(cfg)
	if err != nil {
		rt.lim.ConfigLoaded(false)
		return nil, err
	}
	return func() { rt.commit(cfg, snap) }, nil
}

func (rt *runtime) commit(cfg *config.Config, snap *quota.Snapshot) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.closed {
		return
	}
	rt.cfg = cfg
	rt.swap(snap)
	rt.watch()
}

// swap serves snap, with a new Redis store when the store settings
// changed. The replaced store is closed once requests in flight on it are
// done (its round trips are bounded by its timeout).
func (rt *runtime) swap(snap *quota.Snapshot) {
	rl := rt.cfg.RateLimit
	settings := limiter.SettingsFrom(rl)
	var st store.Store
	var oldTimeout time.Duration
	switch {
	case rt.memory != nil:
		st = rt.memory
	default:
		opts := storeOptions(rl, rt.deps.KeyPrefix, rt.storeM)
		st = rt.lim.Store()
		if st == nil || opts != rt.storeOpts {
			st = store.NewRedis(rt.deps.Redis, opts)
			oldTimeout = rt.storeOpts.Timeout
			rt.storeOpts = opts
		}
	}
	old := rt.lim.Swap(snap, st, settings)
	rt.lim.ConfigLoaded(true)
	if old != nil && old != st {
		// Calls still queued on the old store are bounded by its own
		// timeout, which may have been longer than the new one.
		rt.retire(old, 2*max(oldTimeout, rt.storeOpts.Timeout)+time.Second)
	}
	domains := snap.DomainNames()
	rt.log.Info("rate limit config applied", "domains", domains, "rules", len(snap.Rules), "envoy_files", len(snap.Envoy))
}

func (rt *runtime) retire(old store.Store, after time.Duration) {
	rt.wg.Add(1)
	go func() {
		defer rt.wg.Done()
		select {
		case <-time.After(after):
		case <-rt.stop:
		}
		_ = old.Close()
	}()
}

// ready reports whether the store serves. A Redis store answers from its
// recent round trips (requests' and its prober's), without a round trip
// of its own: at once, also while Redis fails over, and failing while
// writes fail even though Redis answers PING.
func (rt *runtime) ready(ctx context.Context) error {
	st := rt.lim.Store()
	if st == nil {
		return errors.New("no config applied yet")
	}
	if r, ok := st.(interface{ Ready() error }); ok {
		if err := r.Ready(); err != nil {
			return fmt.Errorf("redis store: %w", err)
		}
		return nil
	}
	if err := st.Ping(ctx); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

func (rt *runtime) close() error {
	rt.mu.Lock()
	if rt.closed {
		rt.mu.Unlock()
		return nil
	}
	rt.closed = true
	w := rt.watcher
	rt.watcher = nil
	rt.mu.Unlock()
	close(rt.stop)
	if w != nil {
		_ = w.Close()
	}
	rt.wg.Wait()
	if st := rt.lim.Store(); st != nil {
		_ = st.Close()
	}
	return nil
}

// watch follows the envoy config files of snap: when one changes, the
// envoy domains are compiled again with the current gatehouse config and
// swapped in if valid; an invalid change is logged and counted, and the
// last good config keeps serving. (The gatehouse config's own reload does
// not see these files change.)
func (rt *runtime) watch() {
	paths := envoyWatchPaths(rt.cfg)
	// A watch follows the directory a path named when it was added: a
	// path whose symlink now leads elsewhere (a swapped runtime root)
	// needs a new one.
	real := resolved(paths)
	if equalStrings(paths, rt.watched) && equalStrings(real, rt.watchedReal) {
		return
	}
	rt.watchedReal = real
	if rt.watcher != nil {
		_ = rt.watcher.Close()
		rt.watcher = nil
	}
	rt.watched = paths
	if len(paths) == 0 {
		return
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		rt.log.Warn("cannot watch envoy config files; changes apply on the next gatehouse config reload", "err", err)
		return
	}
	for _, p := range paths {
		if err := w.Add(p); err != nil {
			rt.log.Warn("cannot watch an envoy config path; its changes apply on the next gatehouse config reload", "path", p, "err", err)
		}
	}
	rt.watcher = w
	debounce := rt.cfg.Server.ReloadDebounce.D()
	rt.wg.Add(1)
	go func() {
		defer rt.wg.Done()
		var timer <-chan time.Time
		for {
			select {
			case <-rt.stop:
				return
			case _, ok := <-w.Events:
				if !ok {
					return
				}
				timer = time.After(debounce)
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				rt.log.Warn("envoy config watch error", "err", err)
			case <-timer:
				timer = nil
				rt.reloadEnvoy()
			}
		}
	}()
}

func (rt *runtime) reloadEnvoy() {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.closed || rt.cfg == nil {
		return
	}
	// Follow a swapped runtime root before reading it: a file changed
	// after the read then still triggers the next reload (watching after
	// the swap lost a change made in between).
	rt.watch()
	snap, err := quota.Compile(rt.cfg)
	if err != nil {
		var es config.Errors
		if errors.As(err, &es) {
			err = es.Located(rt.cfg.Source)
		}
		rt.envoyRe.WithLabelValues("rejected").Inc()
		rt.lim.ConfigLoaded(false)
		rt.log.Error("envoy config change rejected; the last good config keeps serving", "errors", err.Error())
		return
	}
	if sameEnvoy(snap, rt.lim.Snapshot()) {
		return
	}
	rt.envoyRe.WithLabelValues("applied").Inc()
	rt.swap(snap)
}

// resolved returns each path with its symlinks resolved ("" when it
// cannot be).
func resolved(paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i], _ = filepath.EvalSymlinks(p)
	}
	return out
}

// envoyWatchPaths are the envoy config files and directories, and each
// file's directory (editors and Kubernetes replace files by renaming), and
// the reference's runtime directory: its directories, and with watchRoot
// the root's parent, where a root that is a symlink is swapped. Hidden
// directories are not watched (a ConfigMap's timestamped directories come
// and go; its ..data swap is an event in the directory itself).
func envoyWatchPaths(cfg *config.Config) []string {
	seen := map[string]bool{}
	var out []string
	add := func(p string) {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	addTree := func(root string) {
		add(root)
		_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() || path == root {
				return nil
			}
			if strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			add(path)
			return nil
		})
	}
	for _, p := range cfg.RateLimit.EnvoyConfigs {
		s := string(p)
		if st, err := os.Stat(s); err == nil && st.IsDir() {
			addTree(s)
			continue
		}
		add(filepath.Dir(s))
	}
	if ref := cfg.RateLimit.Reference; ref != nil && ref.Runtime != nil {
		addTree(ref.Runtime.Dir())
		if ref.Runtime.WatchRoot {
			add(filepath.Dir(filepath.Clean(ref.Runtime.Root)))
		}
	}
	return out
}

func sameEnvoy(a, b *quota.Snapshot) bool {
	if b == nil || len(a.Envoy) != len(b.Envoy) {
		return false
	}
	for i := range a.Envoy {
		if a.Envoy[i].Name != b.Envoy[i].Name || string(a.Envoy[i].Data) != string(b.Envoy[i].Data) {
			return false
		}
	}
	return true
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
