// Package app holds gatehouse's commands (serve, validate, version, ...)
// and the wiring of the serve runtime. cmd/gatehouse only sets up signals
// and calls Main, so every command can be run and tested in-process.
package app

import (
	"context"
	"fmt"
	"io"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/gatehouse/gatehouse/examples"
	"github.com/gatehouse/gatehouse/internal/config"
)

// Version is the build's version, set with
// -ldflags "-X github.com/gatehouse/gatehouse/cmd/gatehouse/app.Version=v1.2.3".
var Version = ""

// ExitError ends the process with Code after the command has already
// printed what went wrong (for example `validate` listing config errors).
type ExitError struct{ Code int }

func (e *ExitError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

// Main runs the gatehouse command line with args (without the program
// name). It returns instead of exiting, so that tests can call it.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	root := &cobra.Command{
		Use:   "gatehouse",
		Short: "Envoy's ext_authz, ext_proc, rate limit and xDS APIs from one config",
		Long: `gatehouse sits beside Envoy and serves its extension APIs — ext_authz,
ext_proc, the rate limit service and an xDS control plane — from one
declarative config (apiVersion: gatehouse/v1).`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(
		newServeCmd(stdout, stderr),
		newValidateCmd(stdout),
		newConfigCmd(stdout),
		newVersionCmd(stdout),
		newRenderCmd(stdout, stderr),
		newCheckCmd(stdout, stderr),
		newAuditCmd(stdout, stderr),
		newRateLimitCompatCmd(stdout, stderr),
	)
	return root.ExecuteContext(ctx)
}

func newVersionCmd(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			_, err := fmt.Fprintf(stdout, "gatehouse %s\n", buildVersion())
			return err
		},
	}
}

// buildVersion is Version, or the module version Go recorded at build.
func buildVersion() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// loadConfig loads path (a file or a directory), or the embedded default
// when path is empty.
func loadConfig(path string, opts config.LoadOptions) (*config.Config, error) {
	if path == "" {
		return config.LoadBytes(examples.DefaultName, examples.Default, opts)
	}
	return config.Load(path, opts)
}
