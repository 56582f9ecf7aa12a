package app

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/gatehouse/gatehouse/authz"
	"github.com/gatehouse/gatehouse/extproc"
	"github.com/gatehouse/gatehouse/internal/component"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/ratelimit"
	"github.com/gatehouse/gatehouse/xds"
	"github.com/gatehouse/gatehouse/xds/translate"
)

// builder is how the app knows a component: the explicit table below, in
// serving order, instead of an init() registry.
type builder struct {
	name  string
	build func(*config.Config, component.Deps) (component.Component, error)
	// validate compiles the component's part of the config without
	// starting anything, for `gatehouse validate`.
	validate func(*config.Config) error
}

// address returns the component's listen address, and whether the config
// enables it (its section is present).
func (b builder) address(cfg *config.Config) (string, bool) { return cfg.ComponentAddress(b.name) }

// newBuilder makes the builder of a component from its package's New and
// Validate, which every component declares with the same shape.
func newBuilder[C component.Component](name string, build func(*config.Config, component.Deps) (C, error), validate func(*config.Config) error) builder {
	return builder{
		name: name,
		build: func(cfg *config.Config, deps component.Deps) (component.Component, error) {
			c, err := build(cfg, deps)
			if err != nil {
				// Not c: a nil *Server in a Component is not a nil Component.
				return nil, err
			}
			return c, nil
		},
		validate: validate,
	}
}

var builders = []builder{
	newBuilder(config.ComponentAuthz, authz.New, authz.Validate),
	newBuilder(config.ComponentExtProc, extproc.New, extproc.Validate),
	newBuilder(config.ComponentRateLimit, ratelimit.New, ratelimit.Validate),
	newBuilder(config.ComponentXDS, xds.New, xds.Validate),
}

// selectBuilders returns the builders of the components to serve: those
// the config enables, narrowed to only when given (serve --components).
func selectBuilders(cfg *config.Config, only []string) ([]builder, error) {
	var out []builder
	for _, name := range only {
		if !slices.ContainsFunc(builders, func(b builder) bool { return b.name == name }) {
			return nil, fmt.Errorf("unknown component %q; use %s", name, strings.Join(componentNames(), ", "))
		}
	}
	for _, b := range builders {
		_, enabled := b.address(cfg)
		wanted := len(only) == 0 || slices.Contains(only, b.name)
		if wanted && !enabled && len(only) > 0 {
			return nil, fmt.Errorf("component %s is not configured: the config has no %s: section", b.name, b.name)
		}
		if wanted && enabled {
			out = append(out, b)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no component to serve: the config enables none of authz, extproc, ratelimit, xds")
	}
	return out, nil
}

func componentNames() []string {
	names := make([]string, len(builders))
	for i, b := range builders {
		names[i] = b.name
	}
	return names
}

// validateComponents runs every enabled component's own checks and returns
// their problems located in the config files.
func validateComponents(cfg *config.Config) config.Errors {
	var all config.Errors
	for _, b := range builders {
		if _, enabled := b.address(cfg); !enabled {
			continue
		}
		all = append(all, asErrors(b.name, b.validate(cfg))...)
	}
	all = append(all, checkRateLimitDomains(cfg)...)
	return all.Located(cfg.Source)
}

// checkRateLimitDomains holds the rate limit domains the rendered Envoy
// routes send descriptors in to those the ratelimit config declares: an
// undeclared domain is answered OK, so a mismatch limits nothing.
func checkRateLimitDomains(cfg *config.Config) config.Errors {
	if cfg.XDS == nil || cfg.RateLimit == nil {
		return nil
	}
	res, err := translate.Translate(cfg)
	if err != nil {
		return nil // xds' own validation reports it
	}
	return asErrors(config.ComponentRateLimit, ratelimit.CheckDomains(cfg, res.RateLimitDomains()))
}

// asErrors turns a component's error into config.Errors, keeping field
// paths when the component gave them.
func asErrors(component string, err error) config.Errors {
	if err == nil {
		return nil
	}
	var es config.Errors
	if errors.As(err, &es) {
		return es
	}
	var fe *config.FieldError
	if errors.As(err, &fe) {
		return config.Errors{fe}
	}
	return config.Errors{{Path: config.Path(component), Msg: err.Error()}}
}
