package app

import (
	"context"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.yaml.in/yaml/v3"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/component"
	"github.com/gatehouse/gatehouse/internal/config"
)

// ReloadResult says what a reload did.
type ReloadResult string

// Reload results, also the values of the gatehouse_config_reloads_total
// result label.
const (
	ReloadApplied   ReloadResult = "applied"
	ReloadUnchanged ReloadResult = "unchanged"
	ReloadRejected  ReloadResult = "rejected"
)

// Reload re-reads the config and applies it when it is valid everywhere.
// On any error the last good config keeps serving; the rejection is logged,
// counted and audited, and returned.
func (r *Runtime) Reload(trigger string) (ReloadResult, error) {
	r.reloadMu.Lock()
	defer r.reloadMu.Unlock()
	old := r.cfg.Load()
	res, err := r.reload(old)
	r.metrics.reloads.WithLabelValues(string(res)).Inc()
	switch res {
	case ReloadRejected:
		r.log.Error("config reload rejected; the last good config keeps serving",
			"trigger", trigger, "serving_version", old.Version, "errors", err.Error())
		r.audit.Record(audit.Event{Kind: audit.KindConfigReject, Version: old.Version, Detail: err.Error()})
	case ReloadApplied:
		cfg := r.cfg.Load()
		r.log.Info("config reloaded", "trigger", trigger, "old_version", old.Version, "version", cfg.Version)
		for _, w := range cfg.Warnings {
			r.log.Warn("config", "warning", w.Error())
		}
		r.audit.Record(audit.Event{Kind: audit.KindConfigChange, Version: cfg.Version, Detail: "from " + old.Version + " (" + trigger + ")"})
	case ReloadUnchanged:
		r.log.Debug("config unchanged", "trigger", trigger, "version", old.Version)
	}
	return res, err
}

func (r *Runtime) reload(old *config.Config) (ReloadResult, error) {
	cfg, err := r.opts.check()
	if err != nil {
		return ReloadRejected, err
	}
	if cfg.SameContent(old) && sameFiles(cfg, old) {
		return ReloadUnchanged, nil
	}
	if errs := restartOnly(old, cfg, r.opts.LogFormat != ""); len(errs) > 0 {
		return ReloadRejected, errs.Located(cfg.Source)
	}
	if err := r.apply(cfg); err != nil {
		return ReloadRejected, err
	}
	return ReloadApplied, nil
}

// sameFiles reports whether two configs came from the same file set; the
// version alone ignores where fields were written, which positions of
// later errors depend on.
func sameFiles(a, b *config.Config) bool {
	return strings.Join(a.Source.Files, "\n") == strings.Join(b.Source.Files, "\n")
}

// restartOnly lists changes a running process cannot apply: listeners,
// gRPC server options, the Redis connection, tracing, audit sinks and the
// log format are fixed when the process starts. Rejecting the reload
// (rather than applying half of it) keeps /config true to what is served.
// formatFlag says --log-format overrides server.log.format, whose value in
// the file then serves nothing and may change freely.
func restartOnly(old, cfg *config.Config, formatFlag bool) config.Errors {
	var errs config.Errors
	check := func(path config.Path, a, b any) {
		if !sameYAML(a, b) {
			errs.Add(path, "changed, but takes effect only on restart; restart gatehouse (nothing of this reload was applied)")
		}
	}
	check("server.admin", old.Server.Admin, cfg.Server.Admin)
	check("server.grpc", old.Server.GRPC, cfg.Server.GRPC)
	check("server.tracing", old.Server.Tracing, cfg.Server.Tracing)
	// The files server.tls names reload by themselves; which files, and
	// who may call, are fixed at start.
	check("server.tls", old.Server.TLS, cfg.Server.TLS)
	check("server.memoryLimit", old.Server.MemoryLimit, cfg.Server.MemoryLimit)
	check("redis", old.Redis, cfg.Redis)
	check("audit", old.Audit, cfg.Audit)
	// The references above compare equal when only the value behind them
	// was rotated; the Redis client and the audit writer still hold the
	// values they started with, so a rotation is a restart too.
	checkSecret := func(path config.Path, a, b config.Secret) {
		if subtle.ConstantTimeCompare(a.Value(), b.Value()) != 1 {
			errs.Add(path, "secret value rotated, but it is read only at start; restart gatehouse (nothing of this reload was applied)")
		}
	}
	if old.Redis != nil && cfg.Redis != nil && sameYAML(old.Redis, cfg.Redis) {
		checkSecret("redis.password", old.Redis.Password, cfg.Redis.Password)
		checkSecret("redis.sentinelPassword", old.Redis.SentinelPassword, cfg.Redis.SentinelPassword)
	}
	if sameYAML(old.Audit, cfg.Audit) {
		checkSecret("audit.chainKey", old.Audit.ChainKey, cfg.Audit.ChainKey)
	}
	if !formatFlag {
		check("server.log.format", old.Server.Log.Format, cfg.Server.Log.Format)
	}
	for _, b := range builders {
		oa, oon := b.address(old)
		na, non := b.address(cfg)
		switch {
		case oon != non:
			errs.Add(config.Path(b.name), "section added or removed, but components start and stop only on restart")
		case oa != na:
			errs.Add(config.Path(b.name).Field("address"), "changed from %s to %s, but listeners move only on restart", oa, na)
		}
	}
	return errs
}

func sameYAML(a, b any) bool {
	x, err1 := yaml.Marshal(a)
	y, err2 := yaml.Marshal(b)
	return err1 == nil && err2 == nil && string(x) == string(y)
}

// watch reloads on SIGHUP and when a config file, or a file the config
// refers to (keys, OpenAPI documents), changes, coalescing the burst of
// events an editor or a ConfigMap update makes.
func (r *Runtime) watch(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	var fw *fileWatcher
	var events <-chan fsnotify.Event
	var errs <-chan error
	if r.opts.ConfigPath != "" && r.opts.ConfigYAML == nil {
		var err error
		if fw, err = newFileWatcher(r.opts.ConfigPath); err != nil {
			r.log.Warn("cannot watch config files; reload with SIGHUP", "err", err)
		} else {
			defer fw.w.Close()
			fw.follow(r.cfg.Load().Source.InputFiles(), r.log)
			events, errs = fw.w.Events, fw.w.Errors
		}
	}
	close(r.watching)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	reload := func(trigger string) {
		if res, _ := r.Reload(trigger); res == ReloadApplied && fw != nil {
			fw.follow(r.cfg.Load().Source.InputFiles(), r.log)
		}
	}
	for {
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-hup:
			reload("SIGHUP")
			r.kickKeys()
			if r.tls != nil {
				r.tls.ReloadLogged("SIGHUP")
			}
		case ev := <-events:
			if fw.relevant(ev.Name) {
				// Read per event: a reload may change the debounce.
				timer.Reset(r.cfg.Load().Server.ReloadDebounce.D())
			}
		case err := <-errs:
			r.log.Warn("config watcher", "err", err)
		case <-timer.C:
			reload("file change")
		}
	}
}

// kickKeys asks the components that fetch keys (authz's JWKS) to fetch
// them again now: SIGHUP is the operator's way to make a key the issuer
// removed stop verifying without waiting for its refresh interval.
func (r *Runtime) kickKeys() {
	for _, s := range r.served {
		if kr, ok := s.comp.(component.KeyRefresher); ok {
			kr.KickKeys()
		}
	}
}

// fileWatcher watches the directories holding the config and the files it
// refers to: editors and Kubernetes replace files by rename, which a watch
// on the file alone would lose.
type fileWatcher struct {
	w      *fsnotify.Watcher
	root   string
	isDir  bool
	dirs   map[string]bool
	inputs map[string]bool
}

func newFileWatcher(path string) (*fileWatcher, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	fw := &fileWatcher{w: w, root: filepath.Clean(path), isDir: st.IsDir(), dirs: map[string]bool{}, inputs: map[string]bool{}}
	dir := fw.root
	if !fw.isDir {
		dir = filepath.Dir(fw.root)
	}
	if err := fw.add(dir); err != nil {
		w.Close()
		return nil, err
	}
	return fw, nil
}

func (fw *fileWatcher) add(dir string) error {
	if fw.dirs[dir] {
		return nil
	}
	if err := fw.w.Add(dir); err != nil {
		return fmt.Errorf("watch %s: %w", dir, err)
	}
	fw.dirs[dir] = true
	return nil
}

// follow adds the directories of the config's input files to the watch.
func (fw *fileWatcher) follow(inputs []string, log *slog.Logger) {
	for _, f := range inputs {
		f = filepath.Clean(f)
		fw.inputs[f] = true
		if err := fw.add(filepath.Dir(f)); err != nil {
			log.Warn("cannot watch a file the config refers to; reload with SIGHUP after changing it", "file", f, "err", err)
		}
	}
}

// relevant says which file events concern the config: the config file (or
// the YAML files of the config directory), Kubernetes' ..data link swap,
// and the files the config refers to.
func (fw *fileWatcher) relevant(name string) bool {
	name = filepath.Clean(name)
	b := filepath.Base(name)
	switch {
	case b == "..data" || fw.inputs[name]:
		return true
	case !fw.isDir:
		return name == fw.root
	case filepath.Dir(name) != fw.root:
		return false
	}
	ext := filepath.Ext(b)
	return !strings.HasPrefix(b, ".") && (ext == ".yaml" || ext == ".yml")
}
