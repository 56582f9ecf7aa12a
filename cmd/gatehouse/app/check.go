package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/gatehouse/gatehouse/authz"
	"github.com/gatehouse/gatehouse/internal/component"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/contract"
	"github.com/gatehouse/gatehouse/internal/kv"
)

// checkOptions are the flags of `gatehouse check`.
type checkOptions struct {
	configPath string
	route      string
	method     string
	path       string
	host       string
	headers    []string
	body       string
	source     string
	principal  string
	certFile   string
	timeout    time.Duration
	asJSON     bool
}

func newCheckCmd(stdout, stderr io.Writer) *cobra.Command {
	var o checkOptions
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Dry-run one request through the authz policy and explain the decision",
		Long: `check builds the request Envoy's ext_authz filter would send for the
described HTTP request, decides it with the config's authz policy exactly
as serve would (nothing is counted or audited), and prints each step:
which route, which credential, what was verified, which requirement held
or failed, and the answer Envoy would get (status, headers, metadata).

JWKS URLs and OIDC discovery are fetched as serve would; --timeout bounds
the wait. It exits 0 when the request is allowed (or allowed in shadow
mode), 1 when denied, 2 on a usage or config error.

  gatehouse check --config gatehouse.yaml --route orders \
      -H 'authorization: Bearer eyJ...' --method POST --path /orders`,
		// Usage errors exit 2, as documented: 1 means denied.
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError(stderr, fmt.Errorf("check takes no arguments (got %q); describe the request with flags", args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runCheck(cmd.Context(), o, stdout, stderr)
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError(stderr, err) })
	f := cmd.Flags()
	f.StringVarP(&o.configPath, "config", "c", "", "config file or directory (default: the embedded examples/gatehouse.yaml)")
	f.StringVar(&o.route, "route", "", "route id, as Envoy sends it in context_extensions (empty: match host, path and method)")
	f.StringVar(&o.method, "method", "GET", "HTTP method")
	f.StringVar(&o.path, "path", "/", "HTTP path, with query string")
	f.StringVar(&o.host, "host", "localhost", "HTTP host (:authority)")
	f.StringArrayVarP(&o.headers, "header", "H", nil, "request header 'name: value' (repeatable)")
	f.StringVar(&o.body, "body", "", "request body; @FILE reads a file (for webhook signatures)")
	f.StringVar(&o.source, "source", "127.0.0.1", "client address Envoy saw (attributes.source.address)")
	f.StringVar(&o.principal, "principal", "", "peer certificate principal (URI SAN), as Envoy sends it")
	f.StringVar(&o.certFile, "cert", "", "PEM file of the peer certificate (sent URL-encoded, as include_peer_certificate does)")
	f.DurationVar(&o.timeout, "timeout", 10*time.Second, "how long to wait for JWKS endpoints")
	f.BoolVar(&o.asJSON, "json", false, "print the CheckResponse as JSON after the explanation")
	return cmd
}

func runCheck(ctx context.Context, o checkOptions, stdout, stderr io.Writer) error {
	cfg, err := checkConfig(o.configPath, config.LoadOptions{})
	if err != nil {
		var errs config.Errors
		if errors.As(err, &errs) {
			for _, e := range errs.Sorted() {
				fmt.Fprintln(stderr, e)
			}
			return &ExitError{Code: 2}
		}
		return err
	}
	if cfg.Authz == nil {
		fmt.Fprintln(stderr, "check: the config has no authz: section")
		return &ExitError{Code: 2}
	}
	cr, err := o.request()
	if err != nil {
		fmt.Fprintln(stderr, "check:", err)
		return &ExitError{Code: 2}
	}
	s, err := authz.New(cfg, component.Deps{
		Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		KV:     kv.NewMemory(0),
	})
	if err != nil {
		return err
	}
	defer s.Close(context.Background())
	wctx, cancel := context.WithTimeout(ctx, o.timeout)
	werr := s.WaitReady(wctx)
	cancel()
	if werr != nil {
		fmt.Fprintf(stdout, "warning: %v\n", werr)
	}
	x := s.Explain(ctx, cr)
	fmt.Fprintf(stdout, "request: %s %s (host %s)\n", o.method, o.path, o.host)
	for i, st := range x.Steps {
		fmt.Fprintf(stdout, "  %2d. %s\n", i+1, st)
	}
	fmt.Fprintf(stdout, "decision: %s\nreason:   %s\nstatus:   %d\nroute:    %s\n", x.Decision, x.Reason, x.Status, x.Route)
	if x.Subject != "" || x.Tier != "" {
		fmt.Fprintf(stdout, "subject:  %s\ntier:     %s\n", x.Subject, x.Tier)
	}
	printResponse(stdout, x.Response)
	if o.asJSON {
		b, err := protojson.MarshalOptions{Multiline: true}.Marshal(x.Response)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s\n", b)
	}
	if x.Decision == "deny" {
		return &ExitError{Code: 1}
	}
	return nil
}

func printResponse(w io.Writer, resp *authv3.CheckResponse) {
	show := func(label string, hs []*corev3.HeaderValueOption) {
		for _, h := range hs {
			fmt.Fprintf(w, "%s %s: %s\n", label, h.GetHeader().GetKey(), h.GetHeader().GetValue())
		}
	}
	if ok := resp.GetOkResponse(); ok != nil {
		show("upstream header   ", ok.GetHeaders())
		for _, h := range ok.GetHeadersToRemove() {
			fmt.Fprintf(w, "upstream removed   %s\n", h)
		}
		show("response header   ", ok.GetResponseHeadersToAdd())
	}
	if d := resp.GetDeniedResponse(); d != nil {
		show("response header   ", d.GetHeaders())
		fmt.Fprintf(w, "response body      %s\n", d.GetBody())
	}
	if md := resp.GetDynamicMetadata(); md != nil {
		b, _ := json.Marshal(md.AsMap())
		fmt.Fprintf(w, "dynamic metadata   %s: %s\n", contract.AuthzFilterName, b)
	}
}

// request builds the CheckRequest Envoy's ext_authz filter would send.
func (o checkOptions) request() (*authv3.CheckRequest, error) {
	headers := map[string]string{
		":method":    o.method,
		":path":      o.path,
		":authority": o.host,
		":scheme":    "https",
	}
	for _, h := range o.headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("header %q is not 'name: value'", h)
		}
		k = strings.ToLower(strings.TrimSpace(k))
		v = strings.TrimSpace(v)
		if old, dup := headers[k]; dup && !strings.HasPrefix(k, ":") {
			v = old + "," + v // as Envoy joins a repeated header
		}
		headers[k] = v
	}
	httpReq := &authv3.AttributeContext_HttpRequest{
		Method: o.method, Path: o.path, Host: o.host, Scheme: "https",
		Protocol: "HTTP/1.1", Headers: headers,
	}
	if o.body != "" {
		body := []byte(o.body)
		if name, ok := strings.CutPrefix(o.body, "@"); ok {
			b, err := os.ReadFile(name)
			if err != nil {
				return nil, err
			}
			body = b
		}
		httpReq.RawBody = body
		httpReq.Size = int64(len(body))
		headers["content-length"] = fmt.Sprint(len(body))
	}
	src := &authv3.AttributeContext_Peer{
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: o.source, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 43210}}}},
		Principal: o.principal,
	}
	if o.certFile != "" {
		b, err := os.ReadFile(o.certFile)
		if err != nil {
			return nil, err
		}
		src.Certificate = url.PathEscape(string(b))
	}
	cr := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:  src,
		Request: &authv3.AttributeContext_Request{Http: httpReq},
	}}
	if o.route != "" {
		cr.Attributes.ContextExtensions = map[string]string{contract.ContextExtensionRoute: o.route}
	}
	return cr, nil
}
