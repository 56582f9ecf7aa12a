package app

import (
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gatehouse/gatehouse/internal/config"
)

func newServeCmd(stdout, stderr io.Writer) *cobra.Command {
	var (
		o          Options
		components string
		logFormat  string
		logLevel   string
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the configured components (authz, extproc, ratelimit, xds) and the admin API",
		Long: `serve starts one gRPC server per configured component, each on its own
address, and the admin HTTP server (/healthz, /readyz, /metrics, /config).
Without --config it serves the embedded default (examples/gatehouse.yaml).

SIGHUP or a change to the config files reloads the config: it is validated
first and, when invalid, rejected while the last good config keeps serving.
SIGTERM drains: readiness fails, servers stop accepting, and in-flight RPCs
get server.shutdownTimeout to finish.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Stdout, o.Stderr = stdout, stderr
			if components != "" {
				for _, c := range strings.Split(components, ",") {
					if c = strings.TrimSpace(c); c != "" {
						o.Components = append(o.Components, c)
					}
				}
			}
			if logFormat != "" {
				if err := config.CheckEnum(config.LogFormat(""), logFormat); err != nil {
					return err
				}
				o.LogFormat = config.LogFormat(logFormat)
			}
			if logLevel != "" {
				if err := config.CheckEnum(config.LogLevel(""), logLevel); err != nil {
					return err
				}
				o.LogLevel = config.LogLevel(logLevel)
			}
			rt, err := Start(cmd.Context(), o)
			if err != nil {
				return err
			}
			return rt.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.ConfigPath, "config", "c", "", "config file or directory (default: the embedded examples/gatehouse.yaml)")
	f.StringVar(&components, "components", "", "serve only these configured components, comma-separated (authz,extproc,ratelimit,xds)")
	f.StringVar(&logFormat, "log-format", "", "json or text (overrides server.log.format)")
	f.StringVar(&logLevel, "log-level", "", "debug, info, warn or error (overrides server.log.level)")
	return cmd
}
