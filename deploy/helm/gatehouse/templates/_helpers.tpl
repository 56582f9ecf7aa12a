{{/*
Names and labels.
*/}}
{{- define "gatehouse.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's full name. Service names append "-<component>" to it (at most
"-ratelimit", 10 characters), so it is cut at 53 to keep them DNS labels.
*/}}
{{- define "gatehouse.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 53 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 53 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 53 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "gatehouse.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gatehouse.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "gatehouse.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "gatehouse.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: gatehouse
{{- end }}

{{- define "gatehouse.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "gatehouse.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The servers, in a fixed order: admin first, then the components. Each line
is "name port grpc?" for the enabled ones; Services, container ports and the
NetworkPolicy are all made from this one list.
*/}}
{{- define "gatehouse.servers" -}}
{{- $servers := list (dict "name" "admin" "port" .Values.ports.admin "grpc" false) }}
{{- range $c := list "authz" "extproc" "ratelimit" "xds" }}
{{- if get $.Values.components $c }}
{{- $servers = append $servers (dict "name" $c "port" (get $.Values.ports $c) "grpc" true) }}
{{- end }}
{{- end }}
{{- toJson $servers }}
{{- end }}

{{/*
host:port a server binds in the pod; IPv6 hosts are bracketed.
*/}}
{{- define "gatehouse.listen" -}}
{{- $host := .root.Values.listenHost }}
{{- if contains ":" $host }}{{ $host = printf "[%s]" $host }}{{ end }}
{{- printf "%s:%v" $host .port }}
{{- end }}

{{/*
Where Envoy reaches a component: its Service's cluster-local DNS name.
*/}}
{{- define "gatehouse.serviceAddress" -}}
{{- printf "%s-%s.%s.svc.%s:%v" (include "gatehouse.fullname" .root) .name .root.Release.Namespace .root.Values.clusterDomain (get .root.Values.ports .name) }}
{{- end }}

{{/*
Mount paths. The config directory is the ConfigMap mounted whole (never
with subPath, which Kubernetes does not update): gatehouse watches the
directory and reloads on the ConfigMap's ..data link swap. Secrets go under
secretsDir/<name>/; part 1's server certificates slot in as one more volume
under /etc/gatehouse/tls/<name>/.
*/}}
{{- define "gatehouse.configDir" -}}/etc/gatehouse/config{{- end }}
{{- define "gatehouse.secretsDir" -}}/etc/gatehouse/secrets{{- end }}

{{- define "gatehouse.redisPasswordSecret" -}}
{{- if .Values.redis.password.existingSecret }}
{{- .Values.redis.password.existingSecret }}
{{- else if .Values.redis.password.value }}
{{- printf "%s-redis" (include "gatehouse.fullname" .) }}
{{- end }}
{{- end }}

{{/*
The config file the chart writes from its values: listen addresses, the
admin server, the drain, where Envoy reaches the components, the Redis
connection. The user's config (.Values.config) is a second file merged with
it by gatehouse.
*/}}
{{- define "gatehouse.chartConfig" -}}
{{- $cfg := dict "apiVersion" "gatehouse/v1" }}
{{- $admin := dict "address" (include "gatehouse.listen" (dict "root" . "port" .Values.ports.admin)) }}
{{- if .Values.tls.enabled }}
{{- $_ := set $admin "sensitiveAddress" (include "gatehouse.listen" (dict "root" . "port" .Values.ports.adminSensitive)) }}
{{- else }}
{{- $_ := set $admin "sensitiveAddress" (printf "127.0.0.1:%v" .Values.ports.adminSensitive) }}
{{- end }}
{{- $server := dict
      "admin" $admin
      "drainDelay" (printf "%ds" (int (.Values.shutdown.drainDelaySeconds | default 0)))
      "shutdownTimeout" (printf "%ds" (int .Values.shutdown.timeoutSeconds))
      "closeTimeout" (printf "%ds" (int .Values.shutdown.closeSeconds)) }}
{{- if .Values.tls.enabled }}
{{- $_ := set $server "tls" (include "gatehouse.serverTLS" . | fromYaml) }}
{{- end }}
{{- $_ := set $cfg "server" $server }}
{{- range $c := list "authz" "extproc" "ratelimit" "xds" }}
{{- if get $.Values.components $c }}
{{- $_ := set $cfg $c (dict "address" (include "gatehouse.listen" (dict "root" $ "port" (get $.Values.ports $c)))) }}
{{- end }}
{{- end }}
{{- if .Values.components.xds }}
{{- $svc := dict }}
{{- range $c := list "authz" "extproc" "ratelimit" }}
{{- if get $.Values.components $c }}
{{- $_ := set $svc $c (include "gatehouse.serviceAddress" (dict "root" $ "name" $c)) }}
{{- end }}
{{- end }}
{{- if and $svc .Values.tls.enabled }}
{{- $t := dict "sni" (include "gatehouse.sni" .) "certificate" .Values.tls.envoy.certificate "validation" .Values.tls.envoy.validation }}
{{- with .Values.tls.serverIdentity }}{{ $_ := set $t "serverIdentities" (list .) }}{{ end }}
{{- $_ := set $svc "tls" $t }}
{{- end }}
{{- if $svc }}
{{- $_ := set $cfg.xds "services" $svc }}
{{- end }}
{{- end }}
{{- with .Values.redis }}
{{- if .addresses }}
{{- $r := dict "mode" .mode "addresses" .addresses }}
{{- with .masterName }}{{ $_ := set $r "masterName" . }}{{ end }}
{{- with .username }}{{ $_ := set $r "username" . }}{{ end }}
{{- if include "gatehouse.redisPasswordSecret" $ }}
{{- $_ := set $r "password" (printf "file:%s/redis/password" (include "gatehouse.secretsDir" $)) }}
{{- end }}
{{- $_ := set $cfg "redis" $r }}
{{- end }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{/*
TLS: where the server's files are mounted, the name Envoy sends (SNI), and
server.tls as the chart writes it.
*/}}
{{- define "gatehouse.tlsDir" -}}/etc/gatehouse/tls/server{{- end }}

{{- define "gatehouse.tlsVolume" -}}
{{- eq .Values.tls.source "spiffeHelper" | ternary "spiffe-svid" "tls-server" }}
{{- end }}

{{- define "gatehouse.sni" -}}
{{- printf "%s.%s.svc.%s" (include "gatehouse.fullname" .) .Release.Namespace .Values.clusterDomain }}
{{- end }}

{{- define "gatehouse.serverTLS" -}}
{{- $dir := include "gatehouse.tlsDir" . }}
{{- $t := dict "allow" .Values.tls.allow }}
{{- if eq .Values.tls.source "spiffeHelper" }}
{{- $_ := set $t "certFile" (printf "%s/svid.pem" $dir) }}
{{- $_ := set $t "keyFile" (printf "%s/svid_key.pem" $dir) }}
{{- $_ := set $t "spiffeBundles" (list (dict "trustDomain" .Values.tls.spiffeHelper.trustDomain "file" (printf "%s/svid_bundle.pem" $dir))) }}
{{- else }}
{{- $_ := set $t "certFile" (printf "%s/tls.crt" $dir) }}
{{- $_ := set $t "keyFile" (printf "%s/tls.key" $dir) }}
{{- $_ := set $t "clientCAFile" (printf "%s/ca.crt" $dir) }}
{{- end }}
{{- $_ := set $t "servers" (dict "admin" (dict "allow" .Values.tls.adminAllow)) }}
{{- toYaml $t }}
{{- end }}

{{/*
The Certificate's DNS names: the SNI and every Service's name.
*/}}
{{- define "gatehouse.certDNSNames" -}}
{{- $names := list (include "gatehouse.sni" .) }}
{{- range $s := include "gatehouse.servers" . | fromJsonArray }}
{{- $names = append $names (printf "%s-%s.%s.svc.%s" (include "gatehouse.fullname" $) $s.name $.Release.Namespace $.Values.clusterDomain) }}
{{- end }}
{{- toJson (concat $names .Values.tls.certManager.dnsNames) }}
{{- end }}

{{/*
The documents of the user's config (.Values.config, YAML text, one or more
documents), parsed, as a JSON list: for the checks and the restart checksum.
The ConfigMap holds the text itself.
*/}}
{{- define "gatehouse.userConfigDocs" -}}
{{- $docs := list }}
{{- range $text := regexSplit "(?m)^---[ \t]*$" (.Values.config | default "") -1 }}
{{- $doc := fromYaml $text }}
{{- if $doc }}{{ $docs = append $docs $doc }}{{ end }}
{{- end }}
{{- toJson $docs }}
{{- end }}

{{/*
What gatehouse reads only at start (internal/app/reload.go, restartOnly):
listen addresses and component sections, server.admin, server.grpc,
server.tracing, server.log.format, redis and audit. Their checksum is a pod
annotation, so that a change to any of them rolls the pods, while a change
to anything else is left to gatehouse's hot reload. Keep the two lists in
step; TestConfigMapReload checks them against the running gatehouse.
*/}}
{{- define "gatehouse.restartChecksum" -}}
{{- $start := list (include "gatehouse.chartConfig" .) .Values.secretMounts }}
{{- range $cfg := include "gatehouse.userConfigDocs" . | fromJsonArray }}
{{- $server := get $cfg "server" | default dict }}
{{- $log := get $server "log" | default dict }}
{{- range $k, $v := dict
      "server.grpc" (get $server "grpc")
      "server.tracing" (get $server "tracing")
      "server.log.format" (get $log "format")
      "redis" (get $cfg "redis")
      "audit" (get $cfg "audit") }}
{{- if $v }}{{ $start = append $start (list $k $v) }}{{ end }}
{{- end }}
{{- end }}
{{- toJson $start | sha256sum }}
{{- end }}

{{/*
terminationGracePeriodSeconds: every phase of the shutdown, added up: the
drain delay, the drain and the close.
*/}}
{{- define "gatehouse.terminationGracePeriodSeconds" -}}
{{- $total := 0 }}
{{- range $k, $v := .Values.shutdown }}
{{- $total = add $total (int $v) }}
{{- end }}
{{- $total }}
{{- end }}

{{/*
Checks that no template can express in the schema; each fails the install
with what to do instead.
*/}}
{{- define "gatehouse.validate" -}}
{{- $docs := include "gatehouse.userConfigDocs" . | fromJsonArray }}
{{- if not $docs }}
{{- fail "config is empty; it must start with apiVersion: gatehouse/v1" }}
{{- end }}
{{- $hasRedis := false }}
{{- range $i, $cfg := $docs }}
{{- $where := ternary "config" (printf "config (document %d)" (add $i 1)) (eq $i 0) }}
{{- if hasKey $cfg "Error" }}
{{- fail (printf "%s is not YAML: %s" $where (get $cfg "Error")) }}
{{- end }}
{{- if ne (get $cfg "apiVersion") "gatehouse/v1" }}
{{- fail (printf "%s must start with apiVersion: gatehouse/v1" $where) }}
{{- end }}
{{- $server := get $cfg "server" | default dict }}
{{- range $k, $instead := dict "admin" "ports.admin, ports.adminSensitive and listenHost" "shutdownTimeout" "shutdown.timeoutSeconds" "drainDelay" "shutdown.drainDelaySeconds" "closeTimeout" "shutdown.closeSeconds" "tls" "tls" }}
{{- if hasKey $server $k }}
{{- fail (printf "config.server.%s is written by the chart; set %s instead" $k $instead) }}
{{- end }}
{{- end }}
{{- range $c := list "authz" "extproc" "ratelimit" "xds" }}
{{- $sec := get $cfg $c }}
{{- if and (hasKey $cfg $c) (not (get $.Values.components $c)) }}
{{- fail (printf "config.%s is set but components.%s is false; enable the component or drop its section" $c $c) }}
{{- end }}
{{- if and (kindIs "map" $sec) (hasKey $sec "address") }}
{{- fail (printf "config.%s.address is written by the chart; set ports.%s and listenHost instead" $c $c) }}
{{- end }}
{{- end }}
{{- $xds := get $cfg "xds" | default dict }}
{{- $svcs := get $xds "services" | default dict }}
{{- range $c := list "authz" "extproc" "ratelimit" }}
{{- if hasKey $svcs $c }}
{{- fail (printf "config.xds.services.%s is written by the chart (the %s Service's DNS name); drop it" $c $c) }}
{{- end }}
{{- end }}
{{- if hasKey $svcs "tls" }}
{{- fail "config.xds.services.tls is written by the chart; set tls.envoy and tls.serverIdentity instead" }}
{{- end }}
{{- $redis := get $cfg "redis" | default dict }}
{{- range $k := list "mode" "addresses" "masterName" "username" "password" }}
{{- if hasKey $redis $k }}
{{- fail (printf "config.redis.%s is written by the chart; set redis.%s instead" $k $k) }}
{{- end }}
{{- end }}
{{- if hasKey $cfg "redis" }}{{ $hasRedis = true }}{{ end }}
{{- end }}
{{- if and $hasRedis (not .Values.redis.addresses) }}
{{- fail "config.redis is set but redis.addresses is empty; set redis.addresses" }}
{{- end }}
{{- if and .Values.redis.password.existingSecret .Values.redis.password.value }}
{{- fail "redis.password: set existingSecret or value, not both" }}
{{- end }}
{{- if and (include "gatehouse.redisPasswordSecret" .) (not .Values.redis.addresses) }}
{{- fail "redis.password is set but redis.addresses is empty" }}
{{- end }}
{{- $stateful := or .Values.components.authz .Values.components.extproc .Values.components.ratelimit }}
{{- $many := or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1) }}
{{- if and $stateful $many (not .Values.redis.addresses) }}
{{- fail "more than one replica (replicaCount > 1 or autoscaling.enabled) needs redis.addresses: without Redis each replica keeps its own quotas, replay guards and idempotency records" }}
{{- end }}
{{- $pdb := .Values.podDisruptionBudget }}
{{- if and $pdb.enabled (eq (hasKey $pdb "maxUnavailable") (hasKey $pdb "minAvailable")) }}
{{- fail "podDisruptionBudget: set exactly one of maxUnavailable and minAvailable" }}
{{- end }}
{{- if and .Values.networkPolicy.enabled (not .Values.networkPolicy.envoy) (or .Values.components.authz .Values.components.extproc .Values.components.ratelimit .Values.components.xds) }}
{{- fail "networkPolicy.enabled with no networkPolicy.envoy peers would shut the Envoys out; name their pods or namespaces" }}
{{- end }}
{{- with .Values.tls }}
{{- if .enabled }}
{{- if not .allow }}
{{- fail "tls.allow is empty: no Envoy could call gatehouse; name their SPIFFE ids or DNS names (spiffe://cluster.local/ns/edge/sa/envoy)" }}
{{- end }}
{{- if not .adminAllow }}
{{- fail "tls.adminAllow is empty: name who may read /config and /xds/* over mTLS (they are never served in plaintext beyond loopback)" }}
{{- end }}
{{- if and (eq .source "certManager") (not .certManager.issuerRef.name) }}
{{- fail "tls.certManager.issuerRef.name is empty: name the cert-manager Issuer or ClusterIssuer that signs gatehouse's certificate" }}
{{- end }}
{{- if and (eq .source "secret") (not .secret.name) }}
{{- fail "tls.secret.name is empty: name the Secret with tls.crt, tls.key and ca.crt" }}
{{- end }}
{{- if and (eq .source "spiffeHelper") (or (not .spiffeHelper.trustDomain) (not .serverIdentity)) }}
{{- fail "tls.source spiffeHelper needs tls.spiffeHelper.trustDomain and tls.serverIdentity (gatehouse's SPIFFE id, which Envoy verifies)" }}
{{- end }}
{{- end }}
{{- end }}
{{- range .Values.secretMounts }}
{{- if eq .name "redis" }}
{{- fail "secretMounts: the name \"redis\" is the chart's own mount of redis.password" }}
{{- end }}
{{- end }}
{{- end }}
