// Package config is gatehouse's one declarative configuration: the YAML
// schema (apiVersion gatehouse/v1) shared by every component, its strict
// loader and its validation.
//
// The schema types live here rather than in the components because a route
// is declared once and read by all four of them (xds translates its match
// and upstream, authz its policy, ratelimit its quotas, extproc its
// processors), and dependencies point down: components import config, never
// each other. Each component compiles its part of the schema into its own
// runtime form and reports problems as FieldErrors with paths, which the
// loader's Source turns into file:line.
//
// Values are parsed once, here: regular expressions (anchored as Envoy
// anchors them), CIDRs, times, time zones, SPIFFE ids, windows and
// durations reach the components as typed values (values.go), never as
// strings to parse again.
//
// Defaults live in one place: the `default` tags on the fields below.
// Defaults[T] returns a section filled from them, `gatehouse config
// defaults` prints them and docs/config-reference.md is generated from
// them (a test keeps the two in step).
package config

import (
	"bytes"

	"go.yaml.in/yaml/v3"
)

// Config is the whole gatehouse configuration.
type Config struct {
	// APIVersion must be gatehouse/v1.
	APIVersion string `yaml:"apiVersion"`
	// Server holds process-wide settings: logging, admin, gRPC, tracing.
	Server Server `yaml:"server"`
	// Redis is the shared store. When absent, gatehouse uses an in-process
	// store and runs as a single replica.
	Redis *Redis `yaml:"redis,omitempty"`
	// Audit is where decision, config-change and NACK records go.
	Audit Audit `yaml:"audit"`

	// Authz enables the ext_authz server when present.
	Authz *Authz `yaml:"authz,omitempty"`
	// ExtProc enables the ext_proc server when present.
	ExtProc *ExtProc `yaml:"extproc,omitempty"`
	// RateLimit enables the rate limit server when present.
	RateLimit *RateLimit `yaml:"ratelimit,omitempty"`
	// XDS enables the xDS control plane when present.
	XDS *XDS `yaml:"xds,omitempty"`

	// Listeners are the Envoy listeners the control plane serves.
	Listeners []Listener `yaml:"listeners,omitempty"`
	// Clusters are the upstream clusters routes send traffic to.
	Clusters []Cluster `yaml:"clusters,omitempty"`
	// Routes are declared once and read by every component.
	Routes []Route `yaml:"routes,omitempty"`

	// Source records the files read and where each field was written.
	Source *Source `yaml:"-"`
	// Version is a content hash of the effective config.
	Version string `yaml:"-"`
	// Warnings are problems that do not make the config invalid.
	Warnings Errors `yaml:"-"`

	// fingerprint extends Version with the secret values, for deciding
	// whether a reload changes anything. It is never shown.
	fingerprint string
}

// Redacted renders the effective config as YAML for /config: defaults
// filled in, secrets shown as their references only.
func (c *Config) Redacted() ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Locate is shorthand for c.Source.Locate.
func (c *Config) Locate(p Path) Pos { return c.Source.Locate(p) }

// Component names, as used by `serve --components` and in metrics.
const (
	ComponentAuthz     = "authz"
	ComponentExtProc   = "extproc"
	ComponentRateLimit = "ratelimit"
	ComponentXDS       = "xds"
)

// ComponentAddress returns the listen address of the named component, and
// whether the config enables it (its section is present).
func (c *Config) ComponentAddress(name string) (string, bool) {
	switch {
	case name == ComponentAuthz && c.Authz != nil:
		return c.Authz.Address, true
	case name == ComponentExtProc && c.ExtProc != nil:
		return c.ExtProc.Address, true
	case name == ComponentRateLimit && c.RateLimit != nil:
		return c.RateLimit.Address, true
	case name == ComponentXDS && c.XDS != nil:
		return c.XDS.Address, true
	}
	return "", false
}
