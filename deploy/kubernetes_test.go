package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// object is one decoded manifest.
type object struct {
	file string
	kind string
	meta metav1.ObjectMeta
	obj  any
}

// newObject returns an empty typed object for apiVersion and kind, or nil
// for a kind the manifests are not expected to hold.
func newObject(apiVersion, kind string) any {
	switch apiVersion + " " + kind {
	case "v1 Namespace":
		return &corev1.Namespace{}
	case "v1 ServiceAccount":
		return &corev1.ServiceAccount{}
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}
	case "v1 Service":
		return &corev1.Service{}
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}
	case "apps/v1 StatefulSet":
		return &appsv1.StatefulSet{}
	case "apps/v1 DaemonSet":
		return &appsv1.DaemonSet{}
	case "networking.k8s.io/v1 NetworkPolicy":
		return &networkingv1.NetworkPolicy{}
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}
	case "v1 Secret":
		return &corev1.Secret{}
	case "v1 Pod":
		return &corev1.Pod{}
	case "autoscaling/v2 HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}
	case "monitoring.coreos.com/v1 ServiceMonitor":
		return &monitoringv1.ServiceMonitor{}
	case "monitoring.coreos.com/v1 PrometheusRule":
		return &monitoringv1.PrometheusRule{}
	}
	return nil
}

// loadManifests decodes every document of every YAML file in dir strictly
// (unknown or misspelt fields, wrong types and duplicate keys are errors)
// into its k8s.io/api type.
func loadManifests(t *testing.T, dir string) []object {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s: %v", dir, err)
	}
	var out []object
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, decodeDocs(t, filepath.Base(f), regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1))...)
	}
	return out
}

// decodeDocs decodes each YAML document of docs (from file, for messages)
// strictly into its type; a document of comments only is skipped.
func decodeDocs(t *testing.T, file string, docs []string) []object {
	t.Helper()
	var out []object
	for i, doc := range docs {
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			t.Fatalf("%s #%d: %v", file, i+1, err)
		}
		obj := newObject(tm.APIVersion, tm.Kind)
		if obj == nil {
			t.Fatalf("%s #%d: unexpected %s %s", file, i+1, tm.APIVersion, tm.Kind)
		}
		if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
			t.Fatalf("%s #%d (%s): %v", file, i+1, tm.Kind, err)
		}
		js, _ := json.Marshal(obj)
		var m struct {
			Metadata metav1.ObjectMeta `json:"metadata"`
		}
		if err := json.Unmarshal(js, &m); err != nil {
			t.Fatal(err)
		}
		out = append(out, object{file: file, kind: tm.Kind, meta: m.Metadata, obj: obj})
	}
	return out
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// workload is a pod template with what owns it.
type workload struct {
	name     string
	selector *metav1.LabelSelector
	pod      corev1.PodTemplateSpec
}

func workloads(objs []object) []workload {
	var out []workload
	for _, o := range objs {
		switch w := o.obj.(type) {
		case *appsv1.Deployment:
			out = append(out, workload{w.Name, w.Spec.Selector, w.Spec.Template})
		case *appsv1.StatefulSet:
			out = append(out, workload{w.Name, w.Spec.Selector, w.Spec.Template})
		case *appsv1.DaemonSet:
			out = append(out, workload{w.Name, w.Spec.Selector, w.Spec.Template})
		}
	}
	return out
}

// secrets are the Secrets the manifests read, by name and key: the README's
// Kubernetes block creates each of them.
var secrets = map[string][]string{
	"dataplane-gossip":   {"gossip-key"},
	"dataplane-tokens":   {"admin-token", "cache-write-token", "publisher-token"},
	"dataplane-database": {"url"},
	"dataplane-signing":  {"signing-key", "trusted-keys"},
}

const (
	namespace   = "dataplane"
	gossipLabel = "dataplane.io/gossip"
	gossipPort  = 7946
)

// TestKubernetesManifests decodes deploy/kubernetes strictly into the
// k8s.io/api types and checks what a deployment relies on: every workload
// runs the image's binary as non-root with a read-only root, its -config
// ConfigMap is mounted and equals the example file the dataplane module's
// TestExampleConfigs loads, readiness is /readyz and liveness /healthz on a
// declared port, every Secret it reads is one the README creates, selectors
// of Services and PodDisruptionBudgets select a workload, the gossip seeds
// name the headless Service over every gossiping pod, and a NetworkPolicy
// admits gossip (TCP and UDP) between them.
func TestKubernetesManifests(t *testing.T) {
	objs := loadManifests(t, "kubernetes")
	kinds := map[string]int{}
	configMaps := map[string]*corev1.ConfigMap{}
	for _, o := range objs {
		kinds[o.kind]++
		if o.kind != "Namespace" && o.meta.Namespace != namespace {
			t.Errorf("%s %s/%s: namespace %q, want %q", o.file, o.kind, o.meta.Name, o.meta.Namespace, namespace)
		}
		if cm, ok := o.obj.(*corev1.ConfigMap); ok {
			configMaps[cm.Name] = cm
		}
	}
	for _, k := range []string{"ServiceAccount", "Deployment", "StatefulSet", "Service", "ConfigMap", "NetworkPolicy", "PodDisruptionBudget"} {
		if kinds[k] == 0 {
			t.Errorf("no %s", k)
		}
	}
	wls := workloads(objs)
	commands := map[string]bool{}
	for _, w := range wls {
		t.Run(w.name, func(t *testing.T) {
			checkWorkload(t, w, configMaps, commands)
		})
	}
	for _, c := range []string{"sentinel", "cachenode", "publish", "sync"} {
		if !commands[c] {
			t.Errorf("no workload runs dataplane %s", c)
		}
	}
	checkSelectors(t, objs, wls)
	checkGossip(t, objs, wls, configMaps)
}

func checkWorkload(t *testing.T, w workload, configMaps map[string]*corev1.ConfigMap, commands map[string]bool) {
	sel, err := metav1.LabelSelectorAsSelector(w.selector)
	if err != nil || !sel.Matches(labels.Set(w.pod.Labels)) {
		t.Errorf("selector %v does not select its pod template %v (%v)", w.selector, w.pod.Labels, err)
	}
	ps := w.pod.Spec.SecurityContext
	if ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot || ps.SeccompProfile == nil {
		t.Errorf("pod security context must set runAsNonRoot and a seccomp profile")
	}
	if len(w.pod.Spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(w.pod.Spec.Containers))
	}
	c := w.pod.Spec.Containers[0]
	if !strings.Contains(c.Image, "dataplane") || len(c.Command) != 0 || len(c.Args) == 0 {
		t.Fatalf("container must run the dataplane image's entrypoint with args, got image %q command %v args %v", c.Image, c.Command, c.Args)
	}
	commands[c.Args[0]] = true
	sc := c.SecurityContext
	if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("container security context must be non-root, no privilege escalation, read-only root, all capabilities dropped")
	}
	ports := map[string]bool{}
	for _, p := range c.Ports {
		ports[p.Name] = true
	}
	for _, pr := range []struct {
		what  string
		probe *corev1.Probe
		path  string
	}{{"readiness", c.ReadinessProbe, "/readyz"}, {"liveness", c.LivenessProbe, "/healthz"}} {
		if pr.probe == nil || pr.probe.HTTPGet == nil || pr.probe.HTTPGet.Path != pr.path || !ports[pr.probe.HTTPGet.Port.String()] {
			t.Errorf("%s probe must GET %s on a declared port, got %+v", pr.what, pr.path, pr.probe)
		}
	}
	// -config names a file of a mounted ConfigMap, equal to the example.
	i := slices.Index(c.Args, "-config")
	if i < 0 || i+1 >= len(c.Args) {
		t.Fatalf("args %v lack -config", c.Args)
	}
	dir, file := filepath.Split(c.Args[i+1])
	var cmName string
	for _, m := range c.VolumeMounts {
		if filepath.Clean(m.MountPath) == filepath.Clean(dir) {
			for _, v := range w.pod.Spec.Volumes {
				if v.Name == m.Name && v.ConfigMap != nil {
					cmName = v.ConfigMap.Name
				}
			}
		}
	}
	cm := configMaps[cmName]
	if cm == nil {
		t.Fatalf("-config %s: no ConfigMap mounted at %s", c.Args[i+1], dir)
	}
	example := filepath.Join("kubernetes", "config", c.Args[0]+".json")
	if err := sameJSON(cm.Data[file], example); err != nil {
		t.Errorf("ConfigMap %s %s: %v", cm.Name, file, err)
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
			continue
		}
		ref := e.ValueFrom.SecretKeyRef
		if !slices.Contains(secrets[ref.Name], ref.Key) {
			t.Errorf("env %s reads secret %s key %s, not one the README creates", e.Name, ref.Name, ref.Key)
		}
		if !strings.HasPrefix(e.Name, "DATAPLANE_") {
			t.Errorf("env %s from a secret is not a DATAPLANE_ setting", e.Name)
		}
	}
}

// sameJSON reports whether the JSON text got equals the JSON file want.
func sameJSON(got, wantFile string) error {
	wb, err := os.ReadFile(wantFile)
	if err != nil {
		return err
	}
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	if err := json.Unmarshal(wb, &w); err != nil {
		return fmt.Errorf("%s: %w", wantFile, err)
	}
	gb, _ := json.Marshal(g)
	wb, _ = json.Marshal(w)
	if !bytes.Equal(gb, wb) {
		return fmt.Errorf("differs from %s:\n%s\nwant\n%s", wantFile, gb, wb)
	}
	return nil
}

// checkSelectors checks that every Service and PodDisruptionBudget selects
// at least one workload's pods, and every Service targets declared ports.
func checkSelectors(t *testing.T, objs []object, wls []workload) {
	selects := func(set labels.Selector) []workload {
		var out []workload
		for _, w := range wls {
			if set.Matches(labels.Set(w.pod.Labels)) {
				out = append(out, w)
			}
		}
		return out
	}
	pdbs := 0
	for _, o := range objs {
		switch v := o.obj.(type) {
		case *corev1.Service:
			sel := labels.SelectorFromSet(v.Spec.Selector)
			ws := selects(sel)
			if len(v.Spec.Selector) == 0 || len(ws) == 0 {
				t.Errorf("Service %s selects no workload", v.Name)
			}
			for _, w := range ws {
				for _, p := range v.Spec.Ports {
					if !hasPort(w.pod.Spec.Containers[0], p.TargetPort.String(), p.Protocol) {
						t.Errorf("Service %s port %s: %s has no %s port %s", v.Name, p.Name, w.name, p.Protocol, p.TargetPort.String())
					}
				}
			}
		case *policyv1.PodDisruptionBudget:
			pdbs++
			sel, err := metav1.LabelSelectorAsSelector(v.Spec.Selector)
			if err != nil || len(selects(sel)) != 1 {
				t.Errorf("PodDisruptionBudget %s must select exactly one workload (%v)", v.Name, err)
			}
			if v.Spec.MaxUnavailable == nil && v.Spec.MinAvailable == nil {
				t.Errorf("PodDisruptionBudget %s bounds nothing", v.Name)
			}
		}
	}
	if pdbs == 0 {
		t.Error("no PodDisruptionBudget")
	}
}

func hasPort(c corev1.Container, nameOrNumber string, proto corev1.Protocol) bool {
	if proto == "" {
		proto = corev1.ProtocolTCP
	}
	for _, p := range c.Ports {
		pp := p.Protocol
		if pp == "" {
			pp = corev1.ProtocolTCP
		}
		if pp == proto && (p.Name == nameOrNumber || fmt.Sprint(p.ContainerPort) == nameOrNumber) {
			return true
		}
	}
	return false
}

// checkGossip checks the seeds: every workload's pods gossip (label), a
// headless Service publishing not-ready pods selects them all on the
// gossip port over TCP and UDP, every config's seeds is that Service's DNS
// name, and a NetworkPolicy admits gossip between them.
func checkGossip(t *testing.T, objs []object, wls []workload, configMaps map[string]*corev1.ConfigMap) {
	var headless *corev1.Service
	for _, o := range objs {
		if s, ok := o.obj.(*corev1.Service); ok && s.Spec.Selector[gossipLabel] == "true" {
			headless = s
		}
	}
	if headless == nil {
		t.Fatal("no Service selects the gossiping pods")
	}
	if headless.Spec.ClusterIP != corev1.ClusterIPNone || !headless.Spec.PublishNotReadyAddresses {
		t.Errorf("gossip Service %s must be headless (clusterIP: None) and publish not-ready addresses", headless.Name)
	}
	protos := map[corev1.Protocol]bool{}
	for _, p := range headless.Spec.Ports {
		if p.Port == gossipPort {
			protos[p.Protocol] = true
		}
	}
	if !protos[corev1.ProtocolTCP] || !protos[corev1.ProtocolUDP] {
		t.Errorf("gossip Service %s must carry port %d over TCP and UDP", headless.Name, gossipPort)
	}
	seed := fmt.Sprintf("%s.%s.svc.cluster.local:%d", headless.Name, namespace, gossipPort)
	sel := labels.SelectorFromSet(headless.Spec.Selector)
	for _, w := range wls {
		if !sel.Matches(labels.Set(w.pod.Labels)) {
			t.Errorf("%s does not gossip (no %s label selected by %s)", w.name, gossipLabel, headless.Name)
		}
	}
	for name, cm := range configMaps {
		var cfg struct {
			Seeds []string `json:"seeds"`
		}
		if err := json.Unmarshal([]byte(cm.Data["config.json"]), &cfg); err != nil {
			t.Errorf("ConfigMap %s: %v", name, err)
			continue
		}
		if !slices.Equal(cfg.Seeds, []string{seed}) {
			t.Errorf("ConfigMap %s: seeds %v, want [%s]", name, cfg.Seeds, seed)
		}
	}
	admitted := map[corev1.Protocol]bool{}
	for _, o := range objs {
		np, ok := o.obj.(*networkingv1.NetworkPolicy)
		if !ok {
			continue
		}
		npSel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil || !slices.ContainsFunc(wls, func(w workload) bool { return npSel.Matches(labels.Set(w.pod.Labels)) }) ||
			slices.ContainsFunc(wls, func(w workload) bool { return !npSel.Matches(labels.Set(w.pod.Labels)) }) {
			continue // a policy that selects not every gossiping pod does not count
		}
		for _, rule := range np.Spec.Ingress {
			for _, p := range rule.Ports {
				if p.Port != nil && p.Port.IntValue() == gossipPort && p.Protocol != nil {
					admitted[*p.Protocol] = true
				}
			}
		}
	}
	if !admitted[corev1.ProtocolTCP] || !admitted[corev1.ProtocolUDP] {
		t.Errorf("no NetworkPolicy admits gossip on %d over TCP and UDP (got %v)", gossipPort, admitted)
	}
}

// TestREADMECreatesSecrets checks that the README's Kubernetes block
// creates every Secret key the manifests read.
func TestREADMECreatesSecrets(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	for name, keys := range secrets {
		i := strings.Index(readme, "kubectl -n dataplane create secret generic "+name)
		if i < 0 {
			t.Errorf("README does not create secret %s", name)
			continue
		}
		line, _, _ := strings.Cut(readme[i:], "\n\n")
		for _, k := range keys {
			if !strings.Contains(line, "--from-literal="+k+"=") {
				t.Errorf("README creates secret %s without key %s", name, k)
			}
		}
	}
}

// TestREADMEDeployOrder checks the README's Deploy section the way a
// platform team reads it: its first command block creates the Secrets and
// runs helm install (and helm test), and the plain manifests and systemd
// follow, in that order.
func TestREADMEDeployOrder(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## Deploy\n")
	if !ok {
		t.Fatal("README has no Deploy section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	_, first, ok := strings.Cut(section, "\n```")
	if !ok {
		t.Fatal("README's Deploy section has no command block")
	}
	first, _, _ = strings.Cut(first, "\n```")
	for _, want := range []string{"create secret generic", "helm install dataplane deploy/helm/dataplane", "helm test dataplane"} {
		if !strings.Contains(first, want) {
			t.Errorf("the Deploy section's first command block lacks %q:\n%s", want, first)
		}
	}
	if strings.Index(first, "create secret generic") > strings.Index(first, "helm install") {
		t.Error("the Deploy section installs the chart before it creates the Secrets")
	}
	last := -1
	for _, step := range []string{"helm install", "kubectl apply -f deploy/kubernetes/", "systemctl enable --now dataplane@"} {
		i := strings.Index(section, step)
		if i < 0 {
			t.Errorf("the Deploy section lacks %q", step)
			continue
		}
		if i < last {
			t.Errorf("the Deploy section has %q before the step it should follow", step)
		}
		last = i
	}
}
