package quota

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	refconfig "github.com/envoyproxy/ratelimit/src/config"
	refsettings "github.com/envoyproxy/ratelimit/src/settings"
	refstats "github.com/envoyproxy/ratelimit/src/stats"
	gostats "github.com/lyft/gostats"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/timeunit"
	"github.com/gatehouse/gatehouse/ratelimit/algo"
)

// EnvoyFile is one envoyproxy/ratelimit config file.
type EnvoyFile struct {
	// Name is the file's path.
	Name string
	// Entry is the index in ratelimit.envoyConfigs that named the file
	// (or its directory), or -1 for a file of the reference's runtime
	// directory (ratelimit.reference.runtime).
	Entry int
	// Data is the file's content.
	Data []byte
	// Root is the parsed file (set by compileEnvoy).
	Root *refconfig.YamlRoot
}

// maxEnvoyFile bounds one envoy config file, as the gatehouse config.
const maxEnvoyFile = config.MaxFileSize

// ReadEnvoyFiles reads the envoy config files named by paths: files, or
// directories whose *.yaml and *.yml files (recursively, skipping hidden
// entries such as Kubernetes' ..data) are read in name order.
func ReadEnvoyFiles(paths []string) ([]EnvoyFile, config.Errors) {
	var out []EnvoyFile
	var errs config.Errors
	for i, p := range paths {
		at := config.Path("ratelimit.envoyConfigs").Index(i)
		st, err := os.Stat(p)
		if err != nil {
			errs.Add(at, "%v", unwrapPathError(err))
			continue
		}
		var names []string
		if st.IsDir() {
			err := filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				if path != p && strings.HasPrefix(d.Name(), ".") {
					if d.IsDir() {
						return filepath.SkipDir
					}
					return nil
				}
				if ext := filepath.Ext(path); !d.IsDir() && (ext == ".yaml" || ext == ".yml") {
					names = append(names, path)
				}
				return nil
			})
			if err != nil {
				errs.Add(at, "%v", unwrapPathError(err))
				continue
			}
			if len(names) == 0 {
				errs.Add(at, "directory %s holds no *.yaml or *.yml files", p)
				continue
			}
			sort.Strings(names)
		} else {
			names = []string{p}
		}
		for _, n := range names {
			b, err := readLimited(n)
			if err != nil {
				errs.Add(at, "%v", err)
				continue
			}
			out = append(out, EnvoyFile{Name: n, Entry: i, Data: b})
		}
	}
	return out, errs
}

// ReadRuntimeFiles reads envoyproxy/ratelimit's runtime directory as the
// reference does: every file under rt.Dir(), recursively and whatever its
// name, following symlinks to files, in name order. Entries whose names
// start with ".." are Kubernetes' ConfigMap internals (the ..data symlink
// and the timestamped directory it points to) and are always skipped:
// the reference read them too, so that a mounted ConfigMap loaded every
// file twice and failed on a duplicate domain unless dot files were
// ignored. Other dot files are skipped with rt.IgnoreDotFiles. An empty
// directory holds no domain, as for the reference.
func ReadRuntimeFiles(rt *config.RateLimitRuntime) ([]EnvoyFile, config.Errors) {
	at := config.Path("ratelimit.reference.runtime")
	var errs config.Errors
	dir := rt.Dir()
	st, err := os.Stat(dir)
	if err != nil {
		errs.Add(at, "%v", unwrapPathError(err))
		return nil, errs
	}
	if !st.IsDir() {
		errs.Add(at, "%s is not a directory", dir)
		return nil, errs
	}
	var names []string
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path == dir {
			return nil
		}
		name := d.Name()
		if strings.HasPrefix(name, "..") || (rt.IgnoreDotFiles && strings.HasPrefix(name, ".")) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		// A symlink counts as the file it points to (a ConfigMap's keys are
		// symlinks into ..data); anything but a regular file is skipped.
		if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() {
			names = append(names, path)
		}
		return nil
	})
	if err != nil {
		errs.Add(at, "%v", unwrapPathError(err))
		return nil, errs
	}
	sort.Strings(names)
	var out []EnvoyFile
	for _, n := range names {
		b, err := readLimited(n)
		if err != nil {
			errs.Add(at, "%v", err)
			continue
		}
		out = append(out, EnvoyFile{Name: n, Entry: -1, Data: b})
	}
	return out, errs
}

func readLimited(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, unwrapPathError(err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxEnvoyFile+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %v", name, err)
	}
	if len(b) > maxEnvoyFile {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, maxEnvoyFile)
	}
	return b, nil
}

func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %v", pe.Path, pe.Err)
	}
	return err
}

// ParseEnvoy checks and parses envoy config files with envoyproxy/ratelimit's
// own loader (so that what it accepts and refuses, and its messages, are
// the reference's), turning its panics into an error.
func ParseEnvoy(files []EnvoyFile, merge bool) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = panicError(r)
		}
	}()
	loads := make([]refconfig.RateLimitConfigToLoad, len(files))
	for i := range files {
		files[i].Root = refconfig.ConfigFileContentToYaml(files[i].Name, string(files[i].Data))
		loads[i] = refconfig.RateLimitConfigToLoad{Name: files[i].Name, ConfigYaml: files[i].Root}
	}
	refconfig.NewRateLimitConfigImpl(loads, nullStats(), merge)
	return nil
}

// nullStats is a stats manager for the reference loader that records
// nowhere: gatehouse meters rules itself.
func nullStats() refstats.Manager {
	return refstats.NewStatManager(gostats.NewStore(gostats.NewNullSink(), false), refsettings.Settings{})
}

func panicError(r any) error {
	switch v := r.(type) {
	case error:
		return v
	case string:
		return fmt.Errorf("%s", v)
	default:
		return fmt.Errorf("%v", v)
	}
}

// envoyNode is one level of an envoy config domain's descriptor tree.
type envoyNode struct {
	// children by "key" or "key_value", as the reference keys them.
	children map[string]*envoyNode
	// wildcards are the children keys ending in '*', in config order.
	wildcards []string
	rule      *Rule
	// shareThreshold: every value matching this wildcard shares one counter.
	shareThreshold  bool
	wildcardPattern string
	// valueToMetric puts the request's value into the stats key.
	valueToMetric bool
}

// compileEnvoy parses files with the reference loader and compiles each
// domain into a tree that answers exactly as the reference's GetLimit.
func compileEnvoy(files []EnvoyFile, rl *config.RateLimit, add func(*Rule) *Rule) ([]*Domain, error) {
	if err := ParseEnvoy(files, rl.MergeDomains); err != nil {
		return nil, err
	}
	var order []string
	doms := map[string]*Domain{}
	for _, f := range files {
		root := f.Root
		d := doms[root.Domain]
		if d == nil {
			ds := rl.Domains[root.Domain]
			d = &Domain{Name: root.Domain, envoy: &envoyNode{children: map[string]*envoyNode{}}}
			// The envoy config domains know no tiers: they take the
			// mode of the verified tiers.
			d.FailOpen = rl.FailureMode.Default == config.FailOpen
			if ds.FailureMode != "" {
				d.FailOpen = ds.FailureMode == config.FailOpen
			}
			d.Shadow = rl.Shadow || (ds.Shadow != nil && *ds.Shadow)
			d.refKeys = rl.Reference != nil
			doms[root.Domain] = d
			order = append(order, root.Domain)
		}
		if err := d.envoy.load(d, root.Domain+".", false, root.Descriptors, add); err != nil {
			return nil, fmt.Errorf("%s: %w", f.Name, err)
		}
	}
	out := make([]*Domain, len(order))
	for i, n := range order {
		out[i] = doms[n]
	}
	return out, nil
}

// load compiles one level of descriptors; valueToMetric says whether a
// node above has value_to_metric (the rule's stats key then depends on the
// request's values).
func (n *envoyNode) load(d *Domain, parentKey string, valueToMetric bool, descs []refconfig.YamlDescriptor, add func(*Rule) *Rule) error {
	for _, dc := range descs {
		finalKey := dc.Key
		if dc.Value != "" {
			finalKey += "_" + dc.Value
		}
		fullKey := parentKey + finalKey
		if _, dup := n.children[finalKey]; dup {
			// The reference loader refused this already; keep the guard.
			return fmt.Errorf("duplicate descriptor composite key '%s'", fullKey)
		}
		child := &envoyNode{children: map[string]*envoyNode{}, shareThreshold: dc.ShareThreshold, valueToMetric: dc.ValueToMetric}
		vtm := valueToMetric || dc.ValueToMetric
		if dc.ShareThreshold && strings.HasSuffix(finalKey, "*") {
			child.wildcardPattern = finalKey
		}
		if strings.HasSuffix(finalKey, "*") {
			n.wildcards = append(n.wildcards, finalKey)
		}
		if rlc := dc.RateLimit; rlc != nil {
			r := &Rule{
				ID:             fullKey,
				Domain:         d.Name,
				Unlimited:      rlc.Unlimited,
				Shadow:         dc.ShadowMode || d.Shadow,
				QuotaMode:      dc.QuotaMode,
				FailOpen:       d.FailOpen,
				CountRefused:   true,
				Name:           rlc.Name,
				DetailedMetric: dc.DetailedMetric,
				RefKeys:        d.refKeys,
				PerValueStats:  dc.DetailedMetric || vtm,
			}
			for _, rp := range rlc.Replaces {
				r.Replaces = append(r.Replaces, rp.Name)
			}
			if !rlc.Unlimited {
				u, ok := envoyUnit(rlc.Unit)
				if !ok {
					return fmt.Errorf("invalid rate limit unit '%s'", rlc.Unit)
				}
				r.Limits = []*Limit{newEnvoyLimit(rlc.Name, rlc.RequestsPerUnit, u)}
				r.Policy = policyOf(r.Limits)
			}
			child.rule = add(r)
		}
		if err := child.load(d, fullKey+".", vtm, dc.Descriptors, add); err != nil {
			return err
		}
		n.children[finalKey] = child
	}
	return nil
}

// newEnvoyLimit compiles an envoy config rule's limit. current_limit.name
// is the rule's name, empty when it has none, as the reference sends it
// (Envoy copies it into response headers); the unit names an unnamed
// limit only in gatehouse's own RateLimit-Policy header and metrics.
func newEnvoyLimit(name string, rpu uint32, u algo.Unit) *Limit {
	w := algo.Window{Count: 1, Unit: u}
	policy := name
	if policy == "" {
		policy = u.String()
	}
	return newLimit(policy, name, algo.Spec{Kind: algo.Fixed, Limit: uint64(rpu)}, w, protoUnit(u))
}

// envoyUnit reads a unit as the reference does (any case).
func envoyUnit(s string) (algo.Unit, bool) { return timeunit.Parse(s, true) }

// OverrideLimit is the limit of a descriptor that carries Envoy's limit
// override (RateLimitDescriptor.limit): the reference applies it whatever
// the tree says. ok is false for an override without a valid unit.
func OverrideLimit(o *ratelimitv3.RateLimitDescriptor_RateLimitOverride) (*Limit, bool) {
	want := rlsv3.RateLimitResponse_RateLimit_Unit(o.GetUnit())
	u := algo.Unit(0)
	for c := algo.Second; c <= algo.Year; c++ {
		if protoUnits[c] == want {
			u = c
		}
	}
	if u == 0 {
		return nil, false
	}
	return newEnvoyLimit("", o.GetRequestsPerUnit(), u), true
}

// match walks the tree as envoyproxy/ratelimit's GetLimit does: at each
// level the entry's "key_value", else the first wildcard whose prefix
// "key_value" has, else the bare "key"; a limit applies only when found at
// the descriptor's last entry; the walk stops at a node without children.
func (root *envoyNode) match(domain string, entries []*ratelimitv3.RateLimitDescriptor_Entry, key []byte) (*Rule, []byte, MissReason, error) {
	var (
		rule     *Rule
		share    []string
		buf      [256]byte
		children = root.children
		prev     = root
	)
	for i, e := range entries {
		fk := append(append(append(buf[:0], e.GetKey()...), '_'), e.GetValue()...)
		next := children[string(fk)]
		matchedWildcard := ""
		if next == nil && len(prev.wildcards) > 0 {
			for _, w := range prev.wildcards {
				if p := w[:len(w)-1]; len(fk) >= len(p) && string(fk[:len(p)]) == p {
					next = children[w]
					matchedWildcard = w
					break
				}
			}
		}
		if next == nil {
			next = children[e.GetKey()]
		}
		if matchedWildcard != "" && next != nil && next.shareThreshold && next.wildcardPattern != "" {
			if share == nil {
				share = make([]string, len(entries))
			}
			share[i] = strings.TrimPrefix(next.wildcardPattern, e.GetKey()+"_")
		}
		if next != nil && next.rule != nil && i == len(entries)-1 {
			rule = next.rule
		}
		if next == nil || len(next.children) == 0 {
			break
		}
		children = next.children
		prev = next
	}
	if rule == nil {
		return nil, key, NoRule, nil
	}
	if rule.RefKeys {
		return rule, ReferenceIdentity(key, domain, entries, share), Hit, nil
	}
	return rule, EnvoyIdentity(key, domain, entries, share), Hit, nil
}

// ReferenceIdentity appends the identity of an envoy-domain descriptor in
// the reference's own cache key layout: domain_key_value_…_ (the window
// start follows), with share holding the wildcard patterns that replace
// values under share_threshold. In reference mode the counters are kept
// under exactly the reference's keys, so that a fleet moving from the
// reference to gatehouse (a rolling update: both at once) counts together.
// Like the reference's, the layout does not escape: it is the reference's
// key, collisions included.
func ReferenceIdentity(key []byte, domain string, entries []*ratelimitv3.RateLimitDescriptor_Entry, share []string) []byte {
	key = append(key, domain...)
	key = append(key, '_')
	for i, e := range entries {
		key = append(key, e.GetKey()...)
		key = append(key, '_')
		if share != nil && share[i] != "" {
			key = append(key, share[i]...)
		} else {
			key = append(key, e.GetValue()...)
		}
		key = append(key, '_')
	}
	return key
}

// StatsKey is the reference's stats key of a descriptor that matched rule
// (its per-rule counters are kept under it): the rule's ID, except with
// detailed_metric (every value) or value_to_metric (the values of the
// levels that ask for it), walked as the reference's GetLimit builds it.
func (dm *Domain) StatsKey(rule *Rule, entries []*ratelimitv3.RateLimitDescriptor_Entry) string {
	if !rule.PerValueStats || dm.envoy == nil {
		return rule.ID
	}
	var detailed, vtm strings.Builder
	detailed.WriteString(dm.Name)
	vtm.WriteString(dm.Name)
	var share []string
	children, prev := dm.envoy.children, dm.envoy
	for i, e := range entries {
		fk := e.GetKey() + "_" + e.GetValue()
		detailed.WriteString(".")
		detailed.WriteString(fk)
		next := children[fk]
		wildcard := ""
		if next == nil {
			for _, w := range prev.wildcards {
				if strings.HasPrefix(fk, w[:len(w)-1]) {
					next, wildcard = children[w], w
					break
				}
			}
		}
		byValue := next != nil
		if next == nil {
			next = children[e.GetKey()]
		}
		if wildcard != "" && next != nil && next.shareThreshold && next.wildcardPattern != "" {
			if share == nil {
				share = make([]string, len(entries))
			}
			share[i] = strings.TrimPrefix(next.wildcardPattern, e.GetKey()+"_")
		}
		vtm.WriteString(".")
		vtm.WriteString(e.GetKey())
		if next != nil {
			value := ""
			switch {
			case wildcard != "" && share != nil && share[i] != "":
				value = share[i]
			case wildcard != "" && next.valueToMetric:
				value = e.GetValue()
			case wildcard != "":
				value = strings.TrimPrefix(wildcard, e.GetKey()+"_")
			case byValue, next.valueToMetric:
				value = e.GetValue()
			}
			if value != "" {
				vtm.WriteString("_")
				vtm.WriteString(value)
			}
		}
		if next == nil || len(next.children) == 0 {
			break
		}
		children, prev = next.children, next
	}
	if !rule.DetailedMetric {
		return vtm.String()
	}
	if share == nil {
		return detailed.String()
	}
	var b strings.Builder
	b.WriteString(dm.Name)
	for i, e := range entries {
		b.WriteString(".")
		b.WriteString(e.GetKey())
		switch {
		case i < len(share) && share[i] != "":
			b.WriteString("_")
			b.WriteString(share[i])
		case e.GetValue() != "":
			b.WriteString("_")
			b.WriteString(e.GetValue())
		}
	}
	return b.String()
}

// OverrideStatsKey is the reference's stats key of a descriptor carrying
// Envoy's limit override: the domain and every key, with its value when
// not empty.
func OverrideStatsKey(domain string, entries []*ratelimitv3.RateLimitDescriptor_Entry) string {
	var b strings.Builder
	b.WriteString(domain)
	b.WriteString(".")
	for i, e := range entries {
		if i > 0 {
			b.WriteString(".")
		}
		b.WriteString(e.GetKey())
		if e.GetValue() != "" {
			b.WriteString("_")
			b.WriteString(e.GetValue())
		}
	}
	return b.String()
}

// EnvoyIdentity appends the identity of an envoy-domain descriptor: the
// domain and every entry, as the reference's cache key; share holds the
// wildcard patterns that replace values under share_threshold.
func EnvoyIdentity(key []byte, domain string, entries []*ratelimitv3.RateLimitDescriptor_Entry, share []string) []byte {
	key = AppendIdentityPart(key, domain)
	for i, e := range entries {
		key = append(key, '|')
		key = AppendIdentityPart(key, e.GetKey())
		key = append(key, '=')
		if share != nil && share[i] != "" {
			key = AppendIdentityPart(key, share[i])
		} else {
			key = AppendIdentityPart(key, e.GetValue())
		}
	}
	return key
}
