// Package envoy holds the Envoy bootstrap gatehouse ships
// (bootstrap.yaml, embedded) and fills it in for one Envoy: its node, the
// address of gatehouse's xDS server and its own admin address. The
// end-to-end harness and the load scenarios run Envoy on exactly this
// file, with nothing else changed.
package envoy

import (
	_ "embed"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// BootstrapYAML is envoy/bootstrap.yaml.
//
//go:embed bootstrap.yaml
var BootstrapYAML []byte

// BootstrapTLSYAML is envoy/bootstrap-tls.yaml: the same, with the
// control-plane cluster over mutual TLS.
//
//go:embed bootstrap-tls.yaml
var BootstrapTLSYAML []byte

// SDSCertificateYAML and SDSValidationYAML are envoy/sds-certificate.yaml
// and envoy/sds-validation.yaml.
var (
	//go:embed sds-certificate.yaml
	SDSCertificateYAML []byte
	//go:embed sds-validation.yaml
	SDSValidationYAML []byte
)

// The directories bootstrap-tls.yaml and the SDS files name.
const (
	sdsDir = "/etc/envoy/gatehouse"
	tlsDir = "/etc/envoy/gatehouse/tls"
)

// TLS fills in bootstrap-tls.yaml.
type TLS struct {
	// SDSDir holds sds-certificate.yaml and sds-validation.yaml (see
	// WriteSDS).
	SDSDir string
	// SNI is the name Envoy sends to gatehouse's xDS server.
	SNI string
	// ServerIdentity is what gatehouse's certificate must carry: a SPIFFE
	// id (spiffe://..., a URI SAN) or a DNS name.
	ServerIdentity string
}

// WriteSDS writes the two SDS files into dir, naming the certificate
// files (tls.crt, tls.key, ca.crt) in certDir, and returns nothing else:
// TLS.SDSDir and xds.services.tls name them there.
func WriteSDS(dir, certDir string) error {
	for name, b := range map[string][]byte{"sds-certificate.yaml": SDSCertificateYAML, "sds-validation.yaml": SDSValidationYAML} {
		out := strings.ReplaceAll(string(b), tlsDir, certDir)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(out), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Options say what to fill in.
type Options struct {
	// NodeID is node.id; NodeCluster, when set, replaces node.cluster.
	NodeID, NodeCluster string
	// XDS is host:port of gatehouse's ADS server.
	XDS string
	// Admin is host:port of Envoy's admin API.
	Admin string
	// Delta sets api_type DELTA_GRPC (incremental xDS) in place of GRPC.
	Delta bool
	// TLS, when set, uses bootstrap-tls.yaml.
	TLS *TLS
}

// Bootstrap returns the bootstrap as a YAML document (maps and lists) with
// the options filled in, for a caller that adds to it.
func Bootstrap(o Options) (map[string]any, error) {
	var doc map[string]any
	src := BootstrapYAML
	if o.TLS != nil {
		src = BootstrapTLSYAML
	}
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, fmt.Errorf("envoy/bootstrap.yaml: %w", err)
	}
	node, ok := dig(doc, "node").(map[string]any)
	if !ok {
		return nil, fmt.Errorf("envoy/bootstrap.yaml: no node")
	}
	node["id"] = o.NodeID
	if o.NodeCluster != "" {
		node["cluster"] = o.NodeCluster
	}
	if err := setSocket(dig(doc, "admin", "address", "socket_address"), o.Admin); err != nil {
		return nil, fmt.Errorf("envoy/bootstrap.yaml: admin: %w", err)
	}
	found := false
	clusters, _ := dig(doc, "static_resources", "clusters").([]any)
	for _, c := range clusters {
		if dig(c, "name") != "gatehouse.xds" {
			continue
		}
		found = true
		eps, _ := dig(c, "load_assignment", "endpoints").([]any)
		if len(eps) == 0 {
			return nil, fmt.Errorf("envoy/bootstrap.yaml: gatehouse.xds has no endpoints")
		}
		lb, _ := dig(eps[0], "lb_endpoints").([]any)
		if len(lb) == 0 {
			return nil, fmt.Errorf("envoy/bootstrap.yaml: gatehouse.xds has no lb_endpoints")
		}
		if err := setSocket(dig(lb[0], "endpoint", "address", "socket_address"), o.XDS); err != nil {
			return nil, fmt.Errorf("envoy/bootstrap.yaml: gatehouse.xds: %w", err)
		}
		if o.TLS != nil {
			if err := setTLS(c, o.TLS); err != nil {
				return nil, fmt.Errorf("envoy/bootstrap-tls.yaml: gatehouse.xds: %w", err)
			}
		}
	}
	if !found {
		return nil, fmt.Errorf("envoy/bootstrap.yaml: no static cluster gatehouse.xds")
	}
	if o.Delta {
		ads, ok := dig(doc, "dynamic_resources", "ads_config").(map[string]any)
		if !ok {
			return nil, fmt.Errorf("envoy/bootstrap.yaml: no ads_config")
		}
		ads["api_type"] = "DELTA_GRPC"
	}
	return doc, nil
}

// Render returns the filled-in bootstrap as YAML.
func Render(o Options) ([]byte, error) {
	doc, err := Bootstrap(o)
	if err != nil {
		return nil, err
	}
	return yaml.Marshal(doc)
}

func dig(v any, path ...string) any {
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func setSocket(v any, addr string) error {
	m, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("no socket_address to set to %s", addr)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return fmt.Errorf("%q: %w", addr, err)
	}
	m["address"], m["port_value"] = host, p
	return nil
}

// setTLS fills in the control-plane cluster's TLS: the SNI, gatehouse's
// identity and where the SDS files are.
func setTLS(cluster any, t *TLS) error {
	tc, ok := dig(cluster, "transport_socket", "typed_config").(map[string]any)
	if !ok {
		return fmt.Errorf("no transport_socket")
	}
	tc["sni"] = t.SNI
	common, _ := dig(tc, "common_tls_context").(map[string]any)
	certs, _ := dig(common, "tls_certificate_sds_secret_configs").([]any)
	combined, _ := dig(common, "combined_validation_context").(map[string]any)
	vsds, _ := dig(combined, "validation_context_sds_secret_config").(map[string]any)
	sans, _ := dig(combined, "default_validation_context", "match_typed_subject_alt_names").([]any)
	if len(certs) != 1 || vsds == nil || len(sans) != 1 {
		return fmt.Errorf("not the shape envoy/bootstrap-tls.yaml has")
	}
	for _, sds := range []any{certs[0], vsds} {
		pcs, ok := dig(sds, "sds_config", "path_config_source").(map[string]any)
		if !ok {
			return fmt.Errorf("no path_config_source")
		}
		pcs["path"] = filepath.Join(t.SDSDir, filepath.Base(pcs["path"].(string)))
		pcs["watched_directory"] = map[string]any{"path": t.SDSDir}
	}
	san := sans[0].(map[string]any)
	san["san_type"] = "DNS"
	if strings.HasPrefix(t.ServerIdentity, "spiffe://") {
		san["san_type"] = "URI"
	}
	san["matcher"] = map[string]any{"exact": t.ServerIdentity}
	return nil
}
