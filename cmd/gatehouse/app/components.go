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
)

// builder is how the app knows a component: the explicit table below, in
// serving order, instead of an init() registry.
type builder struct {
	name string
	// address returns the listen address, and whether the config enables
	// the component (its section is present).
	address func(*config.Config) (string, bool)
	build   func(*config.Config, component.Deps) (component.Component, error)
	// validate compiles the component's part of the config without
	// starting anything, for `gatehouse validate`.
	validate func(*config.Config) error
}

var builders = []builder{
	{
		name: config.ComponentAuthz,
		address: func(c *config.Config) (string, bool) {
			if c.Authz == nil {
				return "", false
			}
			return c.Authz.Address, true
		},
		build: func(c *config.Config, d component.Deps) (component.Component, error) {
			s, err := authz.New(c, d)
			if err != nil {
				return nil, err
			}
			return s, nil
		},
		validate: authz.Validate,
	},
	{
		name: config.ComponentExtProc,
		address: func(c *config.Config) (string, bool) {
			if c.ExtProc == nil {
				return "", false
			}
			return c.ExtProc.Address, true
		},
		build: func(c *config.Config, d component.Deps) (component.Component, error) {
			s, err := extproc.New(c, d)
			if err != nil {
				return nil, err
			}
			return s, nil
		},
		validate: extproc.Validate,
	},
	{
		name: config.ComponentRateLimit,
		address: func(c *config.Config) (string, bool) {
			if c.RateLimit == nil {
				return "", false
			}
			return c.RateLimit.Address, true
		},
		build: func(c *config.Config, d component.Deps) (component.Component, error) {
			s, err := ratelimit.New(c, d)
			if err != nil {
				return nil, err
			}
			return s, nil
		},
		validate: ratelimit.Validate,
	},
	{
		name: config.ComponentXDS,
		address: func(c *config.Config) (string, bool) {
			if c.XDS == nil {
				return "", false
			}
			return c.XDS.Address, true
		},
		build: func(c *config.Config, d component.Deps) (component.Component, error) {
			s, err := xds.New(c, d)
			if err != nil {
				return nil, err
			}
			return s, nil
		},
		validate: xds.Validate,
	},
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
	return all.Located(cfg.Source)
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
