package app

import (
	"io"

	"github.com/spf13/cobra"

	"github.com/gatehouse/gatehouse/internal/config"
)

// allSections enables every section so that `config defaults` shows every
// default value.
const allSections = `apiVersion: gatehouse/v1
redis: {addresses: ["127.0.0.1:6379"]}
authz: {}
extproc: {}
ratelimit: {}
xds: {}
`

func newConfigCmd(stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Show effective configs and defaults",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "defaults",
		Short: "Print every section with its default values",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			cfg, err := config.LoadBytes("<defaults>", []byte(allSections), config.LoadOptions{})
			if err != nil {
				return err
			}
			return printConfig(stdout, cfg)
		},
	}, &cobra.Command{
		Use:   "print [PATH]",
		Short: "Print the effective config (defaults filled in, secrets as references)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			path := ""
			if len(args) == 1 {
				path = args[0]
			}
			cfg, err := loadConfig(path, config.LoadOptions{SkipSecrets: true})
			if err != nil {
				return err
			}
			return printConfig(stdout, cfg)
		},
	})
	return cmd
}

func printConfig(w io.Writer, cfg *config.Config) error {
	b, err := cfg.Redacted()
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
