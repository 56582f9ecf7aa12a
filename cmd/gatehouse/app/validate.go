package app

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gatehouse/gatehouse/authz"
	"github.com/gatehouse/gatehouse/internal/config"
)

func newValidateCmd(stdout io.Writer) *cobra.Command {
	var skipSecrets, fetchKeys bool
	cmd := &cobra.Command{
		Use:   "validate [PATH]",
		Short: "Check a config file or directory and print every problem with file:line",
		Long: `validate loads a config file, or a directory of *.yaml files, checks it
the way serve would (schema, references, each component's own rules) and
prints every problem at once as file:line: field.path: message. It exits 1
when there is any error, and 0 with a one-line summary otherwise. Without
PATH it checks the embedded default config.

With --fetch-keys it also fetches each JWT issuer's discovery document and
JWKS once, as serve would, and reports what serve would refuse: a plain
http:// jwks_uri named by an https issuer, a JWKS over maxJWKSSize or
without a usable key, an endpoint that does not answer.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := ""
			if len(args) == 1 {
				path = args[0]
			}
			cfg, err := checkConfig(path, config.LoadOptions{SkipSecrets: skipSecrets})
			if err == nil && fetchKeys {
				if errs := asErrors(config.ComponentAuthz, authz.ProbeKeys(cmd.Context(), cfg)); len(errs) > 0 {
					err = errs.Located(cfg.Source)
				}
			}
			var errs config.Errors
			if errors.As(err, &errs) {
				for _, e := range errs.Sorted() {
					fmt.Fprintln(stdout, e)
				}
				n := len(errs) - len(errs.Warnings())
				fmt.Fprintf(stdout, "%d %s\n", n, plural(n, "error", "errors"))
				return &ExitError{Code: 1}
			}
			if err != nil {
				return err
			}
			for _, w := range cfg.Warnings {
				fmt.Fprintln(stdout, w)
			}
			_, err = fmt.Fprintln(stdout, summary(path, cfg))
			return err
		},
	}
	cmd.Flags().BoolVar(&skipSecrets, "skip-secrets", false, "check the form of env:/file: secret references without reading them (for CI without secrets)")
	cmd.Flags().BoolVar(&fetchKeys, "fetch-keys", false, "also fetch each JWT issuer's discovery document and JWKS once, and report what serve would refuse")
	return cmd
}

// checkConfig loads a config and runs every enabled component's checks,
// returning all problems (as config.Errors) sorted by file and line.
func checkConfig(path string, opts config.LoadOptions) (*config.Config, error) {
	cfg, err := loadConfig(path, opts)
	if err != nil {
		return nil, err
	}
	return validated(cfg)
}

// validated runs every enabled component's checks on a loaded config.
func validated(cfg *config.Config) (*config.Config, error) {
	errs := validateComponents(cfg)
	if errs.HasErrors() {
		return nil, errs
	}
	cfg.Warnings = append(cfg.Warnings, errs.Warnings()...)
	return cfg, nil
}

func summary(path string, cfg *config.Config) string {
	if path == "" {
		path = "embedded default"
	}
	var comps []string
	for _, b := range builders {
		if _, ok := b.address(cfg); ok {
			comps = append(comps, b.name)
		}
	}
	if len(comps) == 0 {
		comps = []string{"none"}
	}
	return fmt.Sprintf("ok: %s: %d %s, %d %s, %d %s, %d %s; components: %s; version %s",
		path,
		len(cfg.Source.Files), plural(len(cfg.Source.Files), "file", "files"),
		len(cfg.Routes), plural(len(cfg.Routes), "route", "routes"),
		len(cfg.Clusters), plural(len(cfg.Clusters), "cluster", "clusters"),
		len(cfg.Listeners), plural(len(cfg.Listeners), "listener", "listeners"),
		strings.Join(comps, ", "), cfg.Version)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
