package chartcheck

import (
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
)

// TestRefusedValues: values that would deploy a broken or silently wrong
// gatehouse fail the install, saying what to do instead.
func TestRefusedValues(t *testing.T) {
	tests := []struct {
		name    string
		values  map[string]any
		wantErr string
	}{{
		name:    "unknown value",
		values:  map[string]any{"replicas": 3},
		wantErr: "additional properties 'replicas' not allowed",
	}, {
		name:    "replicas without redis",
		values:  map[string]any{"replicaCount": 3},
		wantErr: "more than one replica (replicaCount > 1 or autoscaling.enabled) needs redis.addresses",
	}, {
		name:    "autoscaling without redis",
		values:  map[string]any{"autoscaling": map[string]any{"enabled": true}},
		wantErr: "more than one replica (replicaCount > 1 or autoscaling.enabled) needs redis.addresses",
	}, {
		name:    "config sets a listen address",
		values:  map[string]any{"config": "apiVersion: gatehouse/v1\nauthz: {address: 127.0.0.1:9191}\n"},
		wantErr: "config.authz.address is written by the chart; set ports.authz and listenHost instead",
	}, {
		name:    "config sets the admin server",
		values:  map[string]any{"config": "apiVersion: gatehouse/v1\nserver: {admin: {address: 127.0.0.1:9190}}\n"},
		wantErr: "config.server.admin is written by the chart; set ports.admin, ports.adminSensitive and listenHost instead",
	}, {
		name:    "config sets server.tls",
		values:  map[string]any{"config": "apiVersion: gatehouse/v1\nserver: {tls: {certFile: /x}}\n"},
		wantErr: "config.server.tls is written by the chart; set tls instead",
	}, {
		name:    "tls without callers",
		values:  map[string]any{"tls": map[string]any{"enabled": true, "source": "secret", "secret": map[string]any{"name": "gh-tls"}, "adminAllow": []any{"spiffe://x.y/ops"}}},
		wantErr: "tls.allow is empty",
	}, {
		name:    "tls without admin callers",
		values:  map[string]any{"tls": map[string]any{"enabled": true, "source": "secret", "secret": map[string]any{"name": "gh-tls"}, "allow": []any{"spiffe://x.y/envoy"}}},
		wantErr: "tls.adminAllow is empty",
	}, {
		name:    "cert-manager without an issuer",
		values:  map[string]any{"tls": map[string]any{"enabled": true, "allow": []any{"*"}, "adminAllow": []any{"*"}}},
		wantErr: "tls.certManager.issuerRef.name is empty",
	}, {
		name:    "config sets the shutdown timeout",
		values:  map[string]any{"config": "apiVersion: gatehouse/v1\nserver: {shutdownTimeout: 30s}\n"},
		wantErr: "config.server.shutdownTimeout is written by the chart; set shutdown.timeoutSeconds instead",
	}, {
		name:    "config sets where Envoy reaches authz",
		values:  map[string]any{"config": "apiVersion: gatehouse/v1\nxds: {services: {authz: gatehouse:9191}}\n"},
		wantErr: "config.xds.services.authz is written by the chart",
	}, {
		name:    "config sets the redis password",
		values:  map[string]any{"config": "apiVersion: gatehouse/v1\nredis: {password: env:REDIS_PASSWORD}\n"},
		wantErr: "config.redis.password is written by the chart; set redis.password instead",
	}, {
		name:    "config tunes redis that is not there",
		values:  map[string]any{"config": "apiVersion: gatehouse/v1\nredis: {keyPrefix: \"x:\"}\n"},
		wantErr: "config.redis is set but redis.addresses is empty",
	}, {
		name:    "config of a disabled component",
		values:  map[string]any{"components": map[string]any{"xds": false}, "config": "apiVersion: gatehouse/v1\nxds: {}\n"},
		wantErr: "config.xds is set but components.xds is false",
	}, {
		name:    "config without apiVersion",
		values:  map[string]any{"config": "authz: {}\n"},
		wantErr: "config must start with apiVersion: gatehouse/v1",
	}, {
		name:    "config that is not YAML",
		values:  map[string]any{"config": "apiVersion: gatehouse/v1\nauthz: [\n"},
		wantErr: "config is not YAML",
	}, {
		name: "two redis passwords",
		values: map[string]any{"redis": map[string]any{
			"addresses": []any{"redis:6379"},
			"password":  map[string]any{"existingSecret": "a", "value": "b"},
		}},
		wantErr: "redis.password: set existingSecret or value, not both",
	}, {
		name:    "redis password without redis",
		values:  map[string]any{"redis": map[string]any{"password": map[string]any{"existingSecret": "a"}}},
		wantErr: "redis.password is set but redis.addresses is empty",
	}, {
		name:    "both disruption budgets",
		values:  map[string]any{"podDisruptionBudget": map[string]any{"minAvailable": 1}},
		wantErr: "podDisruptionBudget: set exactly one of maxUnavailable and minAvailable",
	}, {
		name:    "network policy shutting the Envoys out",
		values:  map[string]any{"networkPolicy": map[string]any{"enabled": true}},
		wantErr: "networkPolicy.enabled with no networkPolicy.envoy peers would shut the Envoys out",
	}, {
		name:    "a secret mount named like the chart's own",
		values:  map[string]any{"secretMounts": []any{map[string]any{"name": "redis", "secretName": "x"}}},
		wantErr: `secretMounts: the name "redis" is the chart's own mount`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := renderValues(t, valuesWith(t, tt.values))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("render(%v) = %v; want an error containing %q", tt.values, err, tt.wantErr)
			}
		})
	}
}

// TestLint runs Helm's own linter (helm lint) on the chart with each value
// set; any finding fails.
func TestLint(t *testing.T) {
	for _, vs := range valueSets {
		t.Run(vs.name, func(t *testing.T) {
			vals := readValues(t, vs.name)
			res := lint.RunAll(chartDir, vals, namespace)
			for _, m := range res.Messages {
				if m.Severity > support.InfoSev {
					t.Errorf("helm lint: %s", m)
				}
			}
		})
	}
}
