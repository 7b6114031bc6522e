package deploy

import (
	"encoding/json"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// configMapName is the ConfigMap a volume mounts, or "".
func configMapName(v corev1.Volume) string {
	if v.ConfigMap != nil {
		return v.ConfigMap.Name
	}
	return ""
}

// checkRendered checks one rendering of the chart: selectors of workloads,
// Services, PodDisruptionBudgets and the ServiceMonitor select pods or
// Services of the rendering; probes GET paths the binary serves on a
// declared port; every Secret and ConfigMap a pod reads is rendered too or
// is one the README tells the user to create (secrets); the HPA scales a
// rendered Deployment; every alert rule has for, severity and a runbook.
func checkRendered(t *testing.T, objs []object, served map[string]bool) {
	t.Helper()
	secretKeys := map[string][]string{}
	configMaps := map[string]bool{}
	deployments := map[string]*appsv1.Deployment{}
	var services []*corev1.Service
	for _, o := range objs {
		if o.meta.Namespace != namespace {
			t.Errorf("%s %s: namespace %q, want %q", o.kind, o.meta.Name, o.meta.Namespace, namespace)
		}
		switch v := o.obj.(type) {
		case *corev1.Secret:
			for k := range v.Data {
				secretKeys[v.Name] = append(secretKeys[v.Name], k)
			}
			for k := range v.StringData {
				secretKeys[v.Name] = append(secretKeys[v.Name], k)
			}
		case *corev1.ConfigMap:
			configMaps[v.Name] = true
		case *appsv1.Deployment:
			deployments[v.Name] = v
		case *corev1.Service:
			services = append(services, v)
		}
	}
	secretHas := func(name, key string) bool {
		if keys, ok := secretKeys[name]; ok {
			return slices.Contains(keys, key)
		}
		return slices.Contains(secrets[name], key)
	}
	wls := workloads(objs)
	var pods []corev1.PodSpec
	for _, w := range wls {
		sel, err := metav1.LabelSelectorAsSelector(w.selector)
		if err != nil || sel.Empty() || !sel.Matches(labels.Set(w.pod.Labels)) {
			t.Errorf("%s: selector %v does not select its pod template %v (%v)", w.name, w.selector, w.pod.Labels, err)
		}
		for _, other := range wls {
			if other.name != w.name && sel.Matches(labels.Set(other.pod.Labels)) {
				t.Errorf("%s: selector also selects %s's pods", w.name, other.name)
			}
		}
		pods = append(pods, w.pod.Spec)
		for _, c := range w.pod.Spec.Containers {
			ports := map[string]bool{}
			for _, p := range c.Ports {
				ports[p.Name] = true
			}
			for _, pr := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe} {
				if pr == nil || pr.HTTPGet == nil {
					t.Errorf("%s: container %s lacks an HTTP readiness or liveness probe", w.name, c.Name)
					continue
				}
				if !served[pr.HTTPGet.Path] {
					t.Errorf("%s: probe GET %s: the binary serves no such path", w.name, pr.HTTPGet.Path)
				}
				if !ports[pr.HTTPGet.Port.String()] {
					t.Errorf("%s: probe port %s is not a declared port", w.name, pr.HTTPGet.Port.String())
				}
			}
		}
	}
	for _, o := range objs {
		if p, ok := o.obj.(*corev1.Pod); ok {
			if p.Annotations["helm.sh/hook"] != "test" {
				t.Errorf("Pod %s is not a helm test hook", p.Name)
			}
			pods = append(pods, p.Spec)
			checkTestURLs(t, p, services, served)
		}
	}
	checkTierURLs(t, objs)
	for _, ps := range pods {
		for _, v := range ps.Volumes {
			if name := configMapName(v); name != "" && !configMaps[name] {
				t.Errorf("volume %s: ConfigMap %s is not rendered", v.Name, name)
			}
			if v.Secret != nil && secretKeyList(secretKeys, v.Secret.SecretName) == nil {
				t.Errorf("volume %s: Secret %s is neither rendered nor one the README creates", v.Name, v.Secret.SecretName)
			}
		}
		for _, c := range ps.Containers {
			for _, e := range c.Env {
				if e.ValueFrom == nil {
					continue
				}
				if r := e.ValueFrom.SecretKeyRef; r != nil && !secretHas(r.Name, r.Key) {
					t.Errorf("container %s env %s: Secret %s key %s is neither rendered nor one the README creates", c.Name, e.Name, r.Name, r.Key)
				}
				if r := e.ValueFrom.ConfigMapKeyRef; r != nil && !configMaps[r.Name] {
					t.Errorf("container %s env %s: ConfigMap %s is not rendered", c.Name, e.Name, r.Name)
				}
			}
			if len(c.EnvFrom) > 0 {
				t.Errorf("container %s: envFrom is not checked; name each variable", c.Name)
			}
		}
	}
	selects := func(sel labels.Selector) []workload {
		var out []workload
		for _, w := range wls {
			if sel.Matches(labels.Set(w.pod.Labels)) {
				out = append(out, w)
			}
		}
		return out
	}
	for _, s := range services {
		ws := selects(labels.SelectorFromSet(s.Spec.Selector))
		if len(s.Spec.Selector) == 0 || len(ws) == 0 {
			t.Errorf("Service %s selects no workload", s.Name)
		}
		for _, w := range ws {
			for _, p := range s.Spec.Ports {
				if !hasPort(w.pod.Spec.Containers[0], p.TargetPort.String(), p.Protocol) {
					t.Errorf("Service %s port %s: %s has no %s port %s", s.Name, p.Name, w.name, p.Protocol, p.TargetPort.String())
				}
			}
		}
	}
	for _, o := range objs {
		switch v := o.obj.(type) {
		case *policyv1.PodDisruptionBudget:
			sel, err := metav1.LabelSelectorAsSelector(v.Spec.Selector)
			if err != nil || len(selects(sel)) != 1 {
				t.Errorf("PodDisruptionBudget %s must select exactly one workload (%v)", v.Name, err)
			}
		case *autoscalingv2.HorizontalPodAutoscaler:
			d := deployments[v.Spec.ScaleTargetRef.Name]
			if v.Spec.ScaleTargetRef.Kind != "Deployment" || d == nil {
				t.Errorf("HorizontalPodAutoscaler %s scales %s %s, not a rendered Deployment", v.Name, v.Spec.ScaleTargetRef.Kind, v.Spec.ScaleTargetRef.Name)
			} else if d.Spec.Replicas != nil {
				t.Errorf("Deployment %s sets replicas while HorizontalPodAutoscaler %s scales it", d.Name, v.Name)
			}
		case *monitoringv1.ServiceMonitor:
			sel, err := metav1.LabelSelectorAsSelector(&v.Spec.Selector)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, s := range services {
				if !sel.Matches(labels.Set(s.Labels)) {
					continue
				}
				n++
				for _, ep := range v.Spec.Endpoints {
					if !slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == ep.Port }) {
						t.Errorf("ServiceMonitor %s: Service %s has no port %s", v.Name, s.Name, ep.Port)
					}
					if ep.Path != "" && !served[ep.Path] {
						t.Errorf("ServiceMonitor %s: path %s is not served", v.Name, ep.Path)
					}
				}
			}
			if n == 0 {
				t.Errorf("ServiceMonitor %s selects no Service", v.Name)
			}
		case *monitoringv1.PrometheusRule:
			alerts := 0
			for _, g := range v.Spec.Groups {
				for _, r := range g.Rules {
					if r.Alert == "" {
						continue
					}
					alerts++
					if r.For == nil || *r.For == "" || r.Labels["severity"] == "" || !strings.Contains(r.Annotations["runbook_url"], "#") {
						t.Errorf("PrometheusRule %s alert %s: want for, a severity label and a runbook_url", v.Name, r.Alert)
					}
				}
			}
			if alerts == 0 {
				t.Errorf("PrometheusRule %s has no alerts", v.Name)
			}
		}
	}
}

func secretKeyList(rendered map[string][]string, name string) []string {
	if k, ok := rendered[name]; ok {
		return k
	}
	return secrets[name]
}

// testURL is a URL a helm test pod requests: http://<service>:<port><path>.
var testURL = regexp.MustCompile(`http://([a-z0-9.-]+):(\d+)(/[^\s"']*)?`)

// checkTestURLs checks each URL in the helm test pod's commands: the host
// is a rendered Service, the port one of its ports, and a path other than
// "/" (the gateway's, answered from the route table) one the binary
// serves. A test pod that names nothing fails too.
func checkTestURLs(t *testing.T, p *corev1.Pod, services []*corev1.Service, served map[string]bool) {
	t.Helper()
	n := 0
	for _, c := range p.Spec.Containers {
		for _, m := range testURL.FindAllStringSubmatch(strings.Join(append(slices.Clone(c.Command), c.Args...), " "), -1) {
			n++
			host, port, path := m[1], m[2], m[3]
			i := slices.IndexFunc(services, func(s *corev1.Service) bool { return s.Name == host })
			if i < 0 {
				t.Errorf("helm test Pod %s requests %s: no Service %s is rendered", p.Name, m[0], host)
				continue
			}
			if !slices.ContainsFunc(services[i].Spec.Ports, func(sp corev1.ServicePort) bool { return strconv.Itoa(int(sp.Port)) == port }) {
				t.Errorf("helm test Pod %s requests %s: Service %s has no port %s", p.Name, m[0], host, port)
			}
			if path != "" && path != "/" && !served[path] {
				t.Errorf("helm test Pod %s requests %s: the binary serves no %s", p.Name, m[0], path)
			}
		}
	}
	if n == 0 {
		t.Errorf("helm test Pod %s requests no Service", p.Name)
	}
}

// tierURL is a cache node's URL in a -origin list: the stable DNS name of
// a StatefulSet's pod, http://<set>-<i>.<service>.<namespace>.svc.cluster.local:<port>.
var tierURL = regexp.MustCompile(`^http://([a-z0-9-]+)-(\d+)\.([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local:(\d+)$`)

// checkTierURLs checks every http:// origin in a rendered -config file (a
// sentinel's cache tier): it names a pod of a rendered StatefulSet (index
// below its replicas) through the set's governing Service, which is
// rendered and headless (else the pod has no DNS name), on the port the
// set's container serves the cache node's API on (named api).
func checkTierURLs(t *testing.T, objs []object) {
	t.Helper()
	sets := map[string]*appsv1.StatefulSet{}
	headless := map[string]bool{}
	var configs []*corev1.ConfigMap
	for _, o := range objs {
		switch v := o.obj.(type) {
		case *appsv1.StatefulSet:
			sets[v.Name] = v
		case *corev1.Service:
			headless[v.Name] = v.Spec.ClusterIP == corev1.ClusterIPNone
		case *corev1.ConfigMap:
			configs = append(configs, v)
		}
	}
	for _, cm := range configs {
		var cfg struct {
			Origin string `json:"origin"`
		}
		if err := json.Unmarshal([]byte(cm.Data["config.json"]), &cfg); err != nil {
			t.Errorf("ConfigMap %s: config.json: %v", cm.Name, err)
			continue
		}
		for _, u := range strings.Split(cfg.Origin, ",") {
			if !strings.HasPrefix(u, "http") {
				continue
			}
			m := tierURL.FindStringSubmatch(u)
			if m == nil {
				t.Errorf("ConfigMap %s: origin %s is not a StatefulSet pod's DNS name", cm.Name, u)
				continue
			}
			set, i, svc, ns, port := sets[m[1]], m[2], m[3], m[4], m[5]
			switch n, _ := strconv.Atoi(i); {
			case set == nil:
				t.Errorf("ConfigMap %s: origin %s: no StatefulSet %s is rendered", cm.Name, u, m[1])
			case set.Spec.ServiceName != svc || !headless[svc]:
				t.Errorf("ConfigMap %s: origin %s: StatefulSet %s is governed by %q, which must be the rendered headless Service %s", cm.Name, u, set.Name, set.Spec.ServiceName, svc)
			case ns != namespace:
				t.Errorf("ConfigMap %s: origin %s: namespace %s, want %s", cm.Name, u, ns, namespace)
			case set.Spec.Replicas == nil || n >= int(*set.Spec.Replicas):
				t.Errorf("ConfigMap %s: origin %s: StatefulSet %s has no pod %d", cm.Name, u, set.Name, n)
			case !slices.ContainsFunc(set.Spec.Template.Spec.Containers[0].Ports, func(p corev1.ContainerPort) bool {
				return p.Name == "api" && strconv.Itoa(int(p.ContainerPort)) == port
			}):
				t.Errorf("ConfigMap %s: origin %s: port %s is not StatefulSet %s's api port", cm.Name, u, port, set.Name)
			}
		}
	}
}
