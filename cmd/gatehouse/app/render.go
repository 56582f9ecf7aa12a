package app

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/xds"
)

func newRenderCmd(stdout, stderr io.Writer) *cobra.Command {
	var (
		output    string
		diff      bool
		group     string
		bootstrap bool
		nodeID    string
	)
	cmd := &cobra.Command{
		Use:   "render CONFIG | render --diff OLD NEW | render --bootstrap CONFIG",
		Short: "Print the Envoy resources a config pushes, or what a change does to them",
		Long: `render translates a config (file or directory) into the exact Envoy
resources the xDS control plane would push — clusters, endpoints,
listeners and route configurations, in Envoy's field names — after the
same validation serve runs. --group prints what one node group receives.

render --diff OLD NEW prints what changing OLD into NEW does to those
resources, one cluster, listener or route at a time, for review in a pull
request. It exits 0 whether or not anything changes; an invalid config
prints its errors (file:line) and exits 1. Secret references are not
read: rendering needs none.

render --bootstrap CONFIG prints a static Envoy bootstrap holding exactly
the resources an Envoy of the group receives over ADS (routes inlined in
their listeners, endpoints in their clusters), for Envoy's own judgement:

  gatehouse render --bootstrap gatehouse.yaml > bs.yaml && envoy --mode validate -c bs.yaml`,
		Args: func(cmd *cobra.Command, args []string) error {
			if diff {
				return cobra.ExactArgs(2)(cmd, args)
			}
			return cobra.ExactArgs(1)(cmd, args)
		},
		RunE: func(_ *cobra.Command, args []string) error {
			if output != string(xds.YAML) && output != string(xds.JSON) {
				return fmt.Errorf("-o %q: use yaml or json", output)
			}
			if bootstrap && diff {
				return fmt.Errorf("--bootstrap and --diff: use one")
			}
			if diff {
				old, err := renderLoad(args[0], group, stdout, stderr)
				if err != nil {
					return err
				}
				cur, err := renderLoad(args[1], group, stdout, stderr)
				if err != nil {
					return err
				}
				text, err := xds.Diff(old, cur)
				if err != nil {
					return err
				}
				if text == "" {
					text = "no change to the Envoy resources\n"
				}
				_, err = io.WriteString(stdout, text)
				return err
			}
			res, err := renderLoad(args[0], group, stdout, stderr)
			if err != nil {
				return err
			}
			if bootstrap {
				b, err := xds.Bootstrap(res, nodeID, group, xds.Format(output))
				if err != nil {
					return err
				}
				_, err = stdout.Write(b)
				return err
			}
			b, err := xds.Marshal(res, xds.Format(output))
			if err != nil {
				return err
			}
			_, err = stdout.Write(b)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVarP(&output, "output", "o", "yaml", "yaml or json")
	f.BoolVar(&diff, "diff", false, "compare two configs: render --diff OLD NEW")
	f.StringVar(&group, "group", "", "only what the named node group's Envoy proxies receive (default: every resource)")
	f.BoolVar(&bootstrap, "bootstrap", false, "print a static Envoy bootstrap of the resources, for envoy --mode validate")
	f.StringVar(&nodeID, "node-id", "gatehouse-render", "the node id of the --bootstrap")
	return cmd
}

// renderLoad loads and validates a config as serve would (every
// component's checks, not only xds') and returns its resources (or one
// group's). Config errors are printed like `validate` prints them.
func renderLoad(path, group string, stdout, stderr io.Writer) (*xds.Resources, error) {
	cfg, err := checkConfig(path, config.LoadOptions{SkipSecrets: true})
	if err == nil {
		var res *xds.Resources
		if res, err = xds.Render(cfg, group); err == nil {
			for _, w := range cfg.Warnings {
				fmt.Fprintln(stderr, w)
			}
			return res, nil
		}
	}
	var errs config.Errors
	if errors.As(err, &errs) {
		if cfg != nil {
			errs = errs.Located(cfg.Source)
		}
		for _, e := range errs.Sorted() {
			fmt.Fprintln(stdout, e)
		}
		n := len(errs) - len(errs.Warnings())
		fmt.Fprintf(stdout, "%s: %d %s\n", path, n, plural(n, "error", "errors"))
		return nil, &ExitError{Code: 1}
	}
	if cfg != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return nil, err
}
