package chartcheck

import (
	"fmt"
	"net"
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	certmanagerv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// valueSets are the value files under testdata/values; each renders to
// testdata/golden/<name>.yaml.
var valueSets = []struct {
	name string
	// secrets says the config refers to mounted secrets, which do not
	// exist here: validate checks their form only (--skip-secrets).
	secrets bool
	// closeSeconds is the values' shutdown.closeSeconds.
	closeSeconds int
}{
	{name: "defaults", closeSeconds: 5},
	{name: "redis-secret", secrets: true, closeSeconds: 5},
	{name: "redis-value", secrets: true, closeSeconds: 5},
	{name: "hpa", secrets: true, closeSeconds: 5},
	{name: "custom-config", secrets: true, closeSeconds: 10},
	{name: "tls-certmanager", closeSeconds: 5},
	{name: "tls-spiffe", closeSeconds: 5},
}

func TestChart(t *testing.T) {
	keep := map[string]bool{}
	for _, vs := range valueSets {
		keep[vs.name] = true
		t.Run(vs.name, func(t *testing.T) {
			r := render(t, vs.name)
			golden(t, vs.name, r.files)
			objs := index(t, r.objects)
			checkMetadata(t, r.objects)
			checkDeployment(t, objs)
			checkServices(t, objs)
			checkPolicies(t, objs)

			// The config, as the pod would read it, judged by gatehouse.
			dir := t.TempDir()
			writeConfigMap(t, dir, objs.configMap.Data)
			args := []string{"validate", dir}
			if vs.secrets {
				args = []string{"validate", "--skip-secrets", dir}
			}
			if out, code := gatehouse(t, args...); code != 0 || !strings.Contains(out, "ok: ") {
				t.Fatalf("gatehouse %s: exit %d\n%s\nconfig:\n%s\n%s", strings.Join(args, " "), code, out,
					objs.configMap.Data["00-chart.yaml"], objs.configMap.Data["10-config.yaml"])
			}
			cfg := printConfig(t, dir)
			checkConfigAgainstObjects(t, cfg, objs, vs.closeSeconds)
		})
	}
	if *update {
		removeStaleGolden(t, keep)
	}
}

// objects are a render's objects by kind.
type objects struct {
	deployment     *appsv1.Deployment
	configMap      *corev1.ConfigMap
	services       map[string]*corev1.Service
	secrets        map[string]*corev1.Secret
	pdb            *policyv1.PodDisruptionBudget
	hpa            *autoscalingv2.HorizontalPodAutoscaler
	serviceMonitor *monitoringv1.ServiceMonitor
	networkPolicy  *networkingv1.NetworkPolicy
	serviceAccount *corev1.ServiceAccount
	certificate    *certmanagerv1.Certificate
}

func index(t *testing.T, all []runtime.Object) *objects {
	t.Helper()
	o := &objects{services: map[string]*corev1.Service{}, secrets: map[string]*corev1.Secret{}}
	one := func(kind string, have bool) {
		if have {
			t.Errorf("two %s objects rendered; want one", kind)
		}
	}
	for _, obj := range all {
		switch x := obj.(type) {
		case *appsv1.Deployment:
			one("Deployment", o.deployment != nil)
			o.deployment = x
		case *corev1.ConfigMap:
			one("ConfigMap", o.configMap != nil)
			o.configMap = x
		case *corev1.Service:
			o.services[x.Name] = x
		case *corev1.Secret:
			o.secrets[x.Name] = x
		case *corev1.ServiceAccount:
			one("ServiceAccount", o.serviceAccount != nil)
			o.serviceAccount = x
		case *policyv1.PodDisruptionBudget:
			one("PodDisruptionBudget", o.pdb != nil)
			o.pdb = x
		case *autoscalingv2.HorizontalPodAutoscaler:
			one("HorizontalPodAutoscaler", o.hpa != nil)
			o.hpa = x
		case *monitoringv1.ServiceMonitor:
			one("ServiceMonitor", o.serviceMonitor != nil)
			o.serviceMonitor = x
		case *networkingv1.NetworkPolicy:
			one("NetworkPolicy", o.networkPolicy != nil)
			o.networkPolicy = x
		case *certmanagerv1.Certificate:
			one("Certificate", o.certificate != nil)
			o.certificate = x
		default:
			t.Errorf("unexpected object %T", obj)
		}
	}
	if o.deployment == nil || o.configMap == nil {
		t.Fatalf("render has no Deployment or no ConfigMap")
	}
	return o
}

// checkMetadata: every object is named as a DNS label, in the release's
// namespace, with the release's labels.
func checkMetadata(t *testing.T, all []runtime.Object) {
	t.Helper()
	for _, obj := range all {
		m, err := metaOf(obj)
		if err != nil {
			t.Fatal(err)
		}
		kind := fmt.Sprintf("%T %s", obj, m.GetName())
		if errs := validation.IsDNS1123Label(m.GetName()); len(errs) > 0 {
			t.Errorf("%s: name: %v", kind, errs)
		}
		if m.GetNamespace() != namespace {
			t.Errorf("%s: namespace %q; want %q", kind, m.GetNamespace(), namespace)
		}
		for k, v := range m.GetLabels() {
			if errs := validation.IsQualifiedName(k); len(errs) > 0 {
				t.Errorf("%s: label key %q: %v", kind, k, errs)
			}
			if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
				t.Errorf("%s: label %s=%q: %v", kind, k, v, errs)
			}
		}
		if m.GetLabels()["app.kubernetes.io/instance"] != releaseName {
			t.Errorf("%s: no app.kubernetes.io/instance=%s label", kind, releaseName)
		}
	}
}

func metaOf(obj runtime.Object) (metav1.Object, error) {
	m, ok := obj.(metav1.Object)
	if !ok {
		return nil, fmt.Errorf("%T has no object metadata", obj)
	}
	return m, nil
}

// podLabels are the labels of the Deployment's pods.
func (o *objects) podLabels() labels.Set { return o.deployment.Spec.Template.Labels }

func (o *objects) container(t *testing.T) *corev1.Container {
	t.Helper()
	cs := o.deployment.Spec.Template.Spec.Containers
	for i := range cs {
		if cs[i].Name == "gatehouse" {
			return &cs[i]
		}
	}
	if len(cs) != 1 {
		t.Fatalf("Deployment has %d containers, none named gatehouse; want one", len(cs))
	}
	return &cs[0]
}

func (o *objects) containerPort(t *testing.T, name string) (int32, bool) {
	t.Helper()
	for _, p := range o.container(t).Ports {
		if p.Name == name {
			return p.ContainerPort, true
		}
	}
	return 0, false
}

// checkDeployment: the restrictive security context, the probes on the
// admin port, the config directory mounted whole.
func checkDeployment(t *testing.T, o *objects) {
	t.Helper()
	d := o.deployment
	pod := d.Spec.Template.Spec
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || !sel.Matches(o.podLabels()) {
		t.Errorf("Deployment selector %v does not match its pods' labels %v (%v)", d.Spec.Selector, o.podLabels(), err)
	}
	if o.hpa != nil && d.Spec.Replicas != nil {
		t.Errorf("Deployment sets replicas (%d) beside a HorizontalPodAutoscaler; every upgrade would undo the autoscaler", *d.Spec.Replicas)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Errorf("automountServiceAccountToken = %v; want false: gatehouse never calls the Kubernetes API", pod.AutomountServiceAccountToken)
	}
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 ||
		psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod securityContext = %+v; want runAsNonRoot, a numeric non-root runAsUser, seccomp RuntimeDefault", psc)
	}
	c := o.container(t)
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 ||
		sc.Privileged == nil || *sc.Privileged {
		t.Errorf("container securityContext = %+v; want readOnlyRootFilesystem, no privilege escalation, all capabilities dropped, not privileged", sc)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources = %+v; want cpu and memory requests and a memory limit", c.Resources)
	}
	for name, p := range map[string]*corev1.Probe{"startup": c.StartupProbe, "liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s probe = %+v; want an HTTP probe on the admin server", name, p)
			continue
		}
		if p.HTTPGet.Port.String() != "admin" {
			t.Errorf("%s probe port = %s; want the admin port", name, p.HTTPGet.Port.String())
		}
		want := map[string]string{"startup": "/healthz", "liveness": "/healthz", "readiness": "/readyz"}[name]
		if p.HTTPGet.Path != want {
			t.Errorf("%s probe path = %s; want %s", name, p.HTTPGet.Path, want)
		}
	}
	if _, ok := o.containerPort(t, "admin"); !ok {
		t.Errorf("no container port named admin for the probes")
	}

	// The config: a ConfigMap volume mounted whole at the directory that
	// serve --config names. A subPath mount never sees an update.
	dir := configFlag(t, c)
	var vol *corev1.Volume
	for i := range pod.Volumes {
		if pod.Volumes[i].ConfigMap != nil && pod.Volumes[i].ConfigMap.Name == o.configMap.Name {
			vol = &pod.Volumes[i]
		}
	}
	if vol == nil {
		t.Fatalf("no volume of ConfigMap %s", o.configMap.Name)
	}
	mounted := false
	for _, m := range c.VolumeMounts {
		if m.Name != vol.Name {
			continue
		}
		if m.SubPath != "" || m.SubPathExpr != "" {
			t.Errorf("config volume mounted with subPath %q: Kubernetes never updates it, so no reload would happen", m.SubPath+m.SubPathExpr)
		}
		if !m.ReadOnly {
			t.Errorf("config volume mounted read-write")
		}
		mounted = mounted || m.MountPath == dir
	}
	if !mounted {
		t.Errorf("serve --config=%s, but the ConfigMap is not mounted there", dir)
	}
	for _, v := range pod.Volumes {
		if v.Secret != nil && (v.Secret.DefaultMode == nil || *v.Secret.DefaultMode != 0o440) {
			t.Errorf("secret volume %s defaultMode = %s; want 0440 (group-readable with fsGroup: the files belong to root)", v.Name, mode(v.Secret.DefaultMode))
		}
	}
}

// configFlag returns the directory of serve --config.
func configFlag(t *testing.T, c *corev1.Container) string {
	t.Helper()
	args := append(slices.Clone(c.Command), c.Args...)
	if len(args) == 0 || args[0] != "serve" {
		t.Fatalf("container args %q; want serve --config=DIR", args)
	}
	for _, a := range args {
		if dir, ok := strings.CutPrefix(a, "--config="); ok {
			return dir
		}
	}
	t.Fatalf("container args %q have no --config=DIR", args)
	return ""
}

// checkServices: every Service selects the pods and targets a named
// container port.
func checkServices(t *testing.T, o *objects) {
	t.Helper()
	if len(o.services) == 0 {
		t.Fatal("no Service rendered")
	}
	for name, s := range o.services {
		if !labels.SelectorFromSet(s.Spec.Selector).Matches(o.podLabels()) || len(s.Spec.Selector) == 0 {
			t.Errorf("Service %s selector %v does not match the pods' labels", name, s.Spec.Selector)
		}
		for _, p := range s.Spec.Ports {
			cp, ok := o.containerPort(t, p.TargetPort.String())
			if !ok {
				t.Errorf("Service %s port %s targets %s, which no container port is named", name, p.Name, p.TargetPort.String())
			} else if cp != p.Port {
				t.Errorf("Service %s port %d; the container listens on %d", name, p.Port, cp)
			}
			if errs := validation.IsValidPortName(p.Name); len(errs) > 0 {
				t.Errorf("Service %s port name %q: %v", name, p.Name, errs)
			}
		}
	}
}

// checkPolicies: the PDB, HPA, ServiceMonitor and NetworkPolicy point at
// the Deployment's pods and Services.
func checkPolicies(t *testing.T, o *objects) {
	t.Helper()
	if o.pdb == nil {
		t.Error("no PodDisruptionBudget")
	} else {
		sel, err := metav1.LabelSelectorAsSelector(o.pdb.Spec.Selector)
		if err != nil || !sel.Matches(o.podLabels()) {
			t.Errorf("PodDisruptionBudget selector %v does not match the pods (%v)", o.pdb.Spec.Selector, err)
		}
		if (o.pdb.Spec.MaxUnavailable == nil) == (o.pdb.Spec.MinAvailable == nil) {
			t.Errorf("PodDisruptionBudget sets %v and %v; want exactly one", o.pdb.Spec.MaxUnavailable, o.pdb.Spec.MinAvailable)
		}
	}
	if h := o.hpa; h != nil {
		ref := h.Spec.ScaleTargetRef
		if ref.Kind != "Deployment" || ref.APIVersion != "apps/v1" || ref.Name != o.deployment.Name {
			t.Errorf("HorizontalPodAutoscaler targets %+v; want the Deployment %s", ref, o.deployment.Name)
		}
		if len(h.Spec.Metrics) == 0 || h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 {
			t.Errorf("HorizontalPodAutoscaler = %+v; want metrics and at least 2 replicas", h.Spec)
		}
	}
	if sm := o.serviceMonitor; sm != nil {
		sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
		if err != nil {
			t.Fatal(err)
		}
		var hits []*corev1.Service
		for _, s := range o.services {
			if sel.Matches(labels.Set(s.Labels)) {
				hits = append(hits, s)
			}
		}
		if len(hits) != 1 {
			t.Fatalf("ServiceMonitor selects %d Services; want the admin Service alone", len(hits))
		}
		for _, ep := range sm.Spec.Endpoints {
			if !slices.ContainsFunc(hits[0].Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == ep.Port }) {
				t.Errorf("ServiceMonitor scrapes port %q, which Service %s does not have", ep.Port, hits[0].Name)
			}
			if ep.Path != "/metrics" {
				t.Errorf("ServiceMonitor path %q; want /metrics", ep.Path)
			}
		}
	}
	if np := o.networkPolicy; np != nil {
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil || !sel.Matches(o.podLabels()) {
			t.Errorf("NetworkPolicy podSelector does not match the pods (%v)", err)
		}
		allowed := map[int32]bool{}
		for _, in := range np.Spec.Ingress {
			if len(in.From) == 0 {
				t.Errorf("NetworkPolicy rule %+v admits everyone", in)
			}
			for _, p := range in.Ports {
				allowed[p.Port.IntVal] = true
			}
		}
		for _, p := range o.container(t).Ports {
			if !allowed[p.ContainerPort] {
				t.Errorf("NetworkPolicy admits nobody to port %s (%d)", p.Name, p.ContainerPort)
			}
		}
	}
}

// checkConfigAgainstObjects: what gatehouse loaded from the ConfigMap
// agrees with the Deployment and Services: it listens on the container
// ports, xDS sends Envoy to the Services, the drain fits the grace period,
// and every file: secret is a mounted Secret key.
func checkConfigAgainstObjects(t *testing.T, cfg *effectiveConfig, o *objects, closeSeconds int) {
	t.Helper()
	for comp, addr := range cfg.componentAddresses() {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			t.Errorf("%s listens on %q: %v", comp, addr, err)
			continue
		}
		if ip := net.ParseIP(host); ip == nil || !ip.IsUnspecified() {
			t.Errorf("%s listens on %s; want every interface, or the kubelet and the Services cannot reach it", comp, addr)
		}
		cp, ok := o.containerPort(t, comp)
		if !ok || strconv.Itoa(int(cp)) != port {
			t.Errorf("%s listens on port %s; container port %q = %d (%v)", comp, port, comp, cp, ok)
		}
		svc := o.services[o.deployment.Name+"-"+comp]
		if svc == nil {
			t.Errorf("no Service for %s", comp)
		}
	}
	for _, c := range []string{"admin", "authz", "extproc", "ratelimit", "xds"} {
		if _, on := cfg.componentAddresses()[c]; !on {
			if _, ok := o.containerPort(t, c); ok {
				t.Errorf("%s is off in the config, but the container exposes its port", c)
			}
			if o.services[o.deployment.Name+"-"+c] != nil {
				t.Errorf("%s is off in the config, but has a Service", c)
			}
		}
	}
	if cfg.XDS != nil {
		for _, c := range []string{"authz", "extproc", "ratelimit"} {
			if _, on := cfg.componentAddresses()[c]; !on {
				continue
			}
			addr, _ := cfg.XDS.Services[c].(string)
			name := o.deployment.Name + "-" + c
			want := fmt.Sprintf("%s.%s.svc.cluster.local:%d", name, namespace, o.services[name].Spec.Ports[0].Port)
			if addr != want {
				t.Errorf("xds.services.%s = %q; want the Service, %q", c, addr, want)
			}
			if o.services[name].Spec.ClusterIP != corev1.ClusterIPNone {
				t.Errorf("Service %s is not headless: Envoy's STRICT_DNS cluster would see one address and pin its connections", name)
			}
		}
	}

	// Kubernetes must not kill a shutdown gatehouse would finish: the
	// grace period is every phase of it, as gatehouse reads them.
	var phases int64
	for _, d := range []string{cfg.Server.DrainDelay, cfg.Server.ShutdownTimeout, cfg.Server.CloseTimeout} {
		v, err := time.ParseDuration(d)
		if err != nil {
			t.Fatalf("a shutdown phase of %q: %v", d, err)
		}
		phases += int64(v / time.Second)
	}
	grace := o.deployment.Spec.Template.Spec.TerminationGracePeriodSeconds
	if grace == nil || *grace != phases {
		t.Errorf("terminationGracePeriodSeconds = %v; want drainDelay %s + shutdownTimeout %s + closeTimeout %s", grace, cfg.Server.DrainDelay, cfg.Server.ShutdownTimeout, cfg.Server.CloseTimeout)
	}
	if cs, _ := time.ParseDuration(cfg.Server.CloseTimeout); int(cs/time.Second) != closeSeconds {
		t.Errorf("server.closeTimeout = %s; want shutdown.closeSeconds, %ds", cfg.Server.CloseTimeout, closeSeconds)
	}
	checkTLS(t, cfg, o)

	if cfg.Redis != nil {
		if len(cfg.Redis.Addresses) == 0 {
			t.Error("redis section without addresses")
		}
	} else if o.hpa != nil || (o.deployment.Spec.Replicas != nil && *o.deployment.Spec.Replicas > 1) {
		t.Error("several replicas without Redis")
	}
	for _, ref := range fileRefs(cfg.raw) {
		checkMountedSecret(t, o, ref)
	}
}

// checkMountedSecret: a file: reference names a key of a Secret volume
// mounted at its directory (and a Secret the chart renders has that key).
func checkMountedSecret(t *testing.T, o *objects, file string) {
	t.Helper()
	dir, base := path.Split(file)
	dir = strings.TrimSuffix(dir, "/")
	c := o.container(t)
	for _, m := range c.VolumeMounts {
		if m.MountPath != dir {
			continue
		}
		for _, v := range o.deployment.Spec.Template.Spec.Volumes {
			if v.Name != m.Name || v.Secret == nil {
				continue
			}
			key := base
			if len(v.Secret.Items) > 0 {
				key = ""
				for _, it := range v.Secret.Items {
					if it.Path == base {
						key = it.Key
					}
				}
				if key == "" {
					t.Errorf("file:%s: Secret %s is mounted at %s without an item of path %s", file, v.Secret.SecretName, dir, base)
					return
				}
			}
			if s := o.secrets[v.Secret.SecretName]; s != nil {
				if _, ok := s.Data[key]; !ok {
					t.Errorf("file:%s: Secret %s has no key %s", file, s.Name, key)
				}
			}
			return
		}
	}
	t.Errorf("file:%s: no Secret volume is mounted at %s", file, dir)
}

// valuesWith returns the chart's defaults changed by edit, as a value map.
func valuesWith(t *testing.T, edit map[string]any) map[string]any {
	t.Helper()
	b, err := yaml.Marshal(edit)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := yaml.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func mode(m *int32) string {
	if m == nil {
		return "unset"
	}
	return fmt.Sprintf("%#o", *m)
}

// checkTLS: with server.tls, every file it names is in the volume mounted
// at its directory, which is the Certificate's Secret (certManager) or the
// spiffe-helper volume; the sensitive admin pages listen on every
// interface over mTLS and have a container port; Envoy is told to speak
// TLS. Without, the sensitive pages stay on loopback.
func checkTLS(t *testing.T, cfg *effectiveConfig, o *objects) {
	t.Helper()
	sens := cfg.Server.Admin.SensitiveAddress
	if cfg.Server.TLS == nil {
		if host, _, _ := net.SplitHostPort(sens); host != "127.0.0.1" {
			t.Errorf("without TLS the sensitive admin pages listen on %q; want loopback", sens)
		}
		if o.certificate != nil {
			t.Error("a Certificate without TLS")
		}
		return
	}
	if _, port, _ := net.SplitHostPort(sens); port == "" {
		t.Errorf("server.admin.sensitiveAddress %q", sens)
	} else if cp, ok := o.containerPort(t, "admin-sensitive"); !ok || strconv.Itoa(int(cp)) != port {
		t.Errorf("the sensitive admin pages listen on port %s; container port admin-sensitive = %d (%v)", port, cp, ok)
	}
	tl := cfg.Server.TLS
	files := []string{tl.CertFile, tl.KeyFile, tl.ClientCAFile}
	for _, b := range tl.SPIFFEBundles {
		files = append(files, b.File)
	}
	pod := o.deployment.Spec.Template.Spec
	for _, f := range files {
		if f == "" {
			continue
		}
		var vol string
		for _, m := range o.container(t).VolumeMounts {
			if m.MountPath == path.Dir(f) {
				vol = m.Name
			}
		}
		if vol == "" {
			t.Errorf("server.tls names %s, but nothing is mounted at %s", f, path.Dir(f))
			continue
		}
		for _, v := range pod.Volumes {
			if v.Name != vol {
				continue
			}
			switch {
			case o.certificate != nil:
				if v.Secret == nil || v.Secret.SecretName != o.certificate.Spec.SecretName {
					t.Errorf("volume %s is not the Certificate's Secret %s", vol, o.certificate.Spec.SecretName)
				}
			case v.Secret == nil && v.EmptyDir == nil && v.CSI == nil:
				t.Errorf("volume %s holds no certificate", vol)
			}
		}
	}
	if cfg.XDS != nil {
		if _, ok := cfg.XDS.Services["tls"]; !ok {
			t.Error("server.tls without xds.services.tls: Envoy would speak plaintext to a TLS server")
		}
	}
}
