package quota

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/contract"
)

// Snapshot is one compiled config: immutable, safe for concurrent use.
type Snapshot struct {
	domains map[string]*Domain
	// Rules lists every rule; Rules[i].Index == i.
	Rules []*Rule
	// Envoy are the envoy config files the snapshot was built from.
	Envoy []EnvoyFile
}

// Domain is one RLS domain: gatehouse's own, or one of envoy config.
type Domain struct {
	Name   string
	native *nativeDomain
	envoy  *envoyNode
	// FailOpen and Shadow are the domain's defaults (for descriptors whose
	// limit comes from Envoy's limit override).
	FailOpen bool
	Shadow   bool
	// refKeys: the domain's counters use the reference's key layout.
	refKeys bool
}

// RefKeys reports whether the domain keeps its counters under the
// reference's own Redis keys (reference mode).
func (dm *Domain) RefKeys() bool { return dm.refKeys }

// IsNative reports whether this is gatehouse's own domain of route quotas.
func (dm *Domain) IsNative() bool { return dm.native != nil }

// Domain returns the named domain.
func (s *Snapshot) Domain(name string) (*Domain, bool) {
	d, ok := s.domains[name]
	return d, ok
}

// DomainNames lists the domains, sorted.
func (s *Snapshot) DomainNames() []string {
	names := make([]string, 0, len(s.domains))
	for n := range s.domains {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// ErrBadDescriptor marks a descriptor the limiter refuses with
// InvalidArgument.
var ErrBadDescriptor = errors.New("bad descriptor")

// Match finds the rule of descriptor d and appends the identity its
// counters are kept under to key. It returns a nil rule and the reason
// when no limit applies, and an error wrapping ErrBadDescriptor for a
// descriptor that contradicts the contract (such as a duplicate key in
// gatehouse's domain).
func (dm *Domain) Match(d *ratelimitv3.RateLimitDescriptor, key []byte) (*Rule, []byte, MissReason, error) {
	if dm.native != nil {
		return dm.native.match(d.GetEntries(), key)
	}
	return dm.envoy.match(dm.Name, d.GetEntries(), key)
}

// Compile builds a snapshot from cfg: gatehouse's domain from the routes,
// plus the domains of the envoy config files. Problems are config.Errors
// with field paths.
func Compile(cfg *config.Config) (*Snapshot, error) {
	rl := cfg.RateLimit
	if rl == nil {
		return nil, errors.New("ratelimit: the config has no ratelimit section")
	}
	var errs config.Errors
	loc := rl.TimeZone.Location()
	s := &Snapshot{domains: map[string]*Domain{}}
	add := func(r *Rule) *Rule {
		r.Index = len(s.Rules)
		s.Rules = append(s.Rules, r)
		return r
	}

	nd := compileNative(cfg, loc, add)
	if nd != nil {
		s.domains[contract.RateLimitDomain] = &Domain{Name: contract.RateLimitDomain, native: nd, FailOpen: rl.FailureMode.Default == config.FailOpen, Shadow: rl.Shadow}
	}

	if rt := runtimeOf(rl); len(rl.EnvoyConfigs) > 0 || rt != nil {
		paths := make([]string, len(rl.EnvoyConfigs))
		for i, p := range rl.EnvoyConfigs {
			paths[i] = string(p)
		}
		files, ferrs := ReadEnvoyFiles(paths)
		if rt != nil {
			more, rerrs := ReadRuntimeFiles(rt)
			files, ferrs = append(files, more...), append(ferrs, rerrs...)
		}
		errs = append(errs, ferrs...)
		if len(ferrs) == 0 {
			s.Envoy = files
			doms, err := compileEnvoy(files, rl, add)
			if err != nil {
				errs = append(errs, envoyError(err, files))
			}
			for _, d := range doms {
				if _, clash := s.domains[d.Name]; clash {
					errs.Add("ratelimit.envoyConfigs", "domain %q of %s is gatehouse's own domain of route quotas; rename it in the envoy config", d.Name, fileOf(d.Name, files))
					continue
				}
				s.domains[d.Name] = d
			}
		}
	}
	for _, name := range sortedNames(rl.Domains) {
		d, ok := s.domains[name]
		if !ok || d.native != nil {
			errs.Add(config.Path("ratelimit.domains").Key(name), "%q is not a domain of envoyConfigs (they define: %s)", name, strings.Join(envoyDomainNames(s), ", "))
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return s, nil
}

func runtimeOf(rl *config.RateLimit) *config.RateLimitRuntime {
	if rl.Reference == nil {
		return nil
	}
	return rl.Reference.Runtime
}

func sortedNames[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func envoyDomainNames(s *Snapshot) []string {
	var out []string
	for _, n := range s.DomainNames() {
		if s.domains[n].envoy != nil {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return []string{"none"}
	}
	return out
}

// envoyError places an error of envoyproxy/ratelimit's config loader
// (which begins with the file name) at the envoyConfigs entry it came from.
func envoyError(err error, files []EnvoyFile) *config.FieldError {
	msg := err.Error()
	for _, f := range files {
		if strings.HasPrefix(msg, f.Name+":") {
			if f.Entry < 0 {
				return &config.FieldError{Path: "ratelimit.reference.runtime", Msg: msg}
			}
			return &config.FieldError{Path: config.Path("ratelimit.envoyConfigs").Index(f.Entry), Msg: msg}
		}
	}
	return &config.FieldError{Path: "ratelimit.envoyConfigs", Msg: msg}
}

func fileOf(domain string, files []EnvoyFile) string {
	for _, f := range files {
		if f.Root != nil && f.Root.Domain == domain {
			return f.Name
		}
	}
	return "an envoy config file"
}

// DumpEnvoy lists the rules of the envoy config domains as the
// reference's /rlconfig prints them ("<key>: unit=… requests_per_unit=…,
// shadow_mode: …, quota_mode: …"), sorted.
func (s *Snapshot) DumpEnvoy() []string {
	var out []string
	for _, r := range s.Rules {
		if d := s.domains[r.Domain]; d == nil || d.envoy == nil {
			continue
		}
		unit, rpu := "UNKNOWN", uint32(0)
		if len(r.Limits) == 1 {
			unit, rpu = r.Limits[0].Proto.Unit.String(), r.Limits[0].Proto.RequestsPerUnit
		}
		out = append(out, fmt.Sprintf("%s: unit=%s requests_per_unit=%d, shadow_mode: %t, quota_mode: %t\n", r.ID, unit, rpu, r.Shadow, r.QuotaMode))
	}
	sort.Strings(out)
	return out
}

// Describe renders a rule for logs.
func (r *Rule) String() string { return fmt.Sprintf("rule %s", r.ID) }
