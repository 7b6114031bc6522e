package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// rulesFile is the alert rules' source; the chart carries a copy.
const (
	rulesFile      = "prometheus/rules.yaml"
	chartRulesFile = "helm/dataplane/files/rules.yaml"
)

// promtool returns the promtool binary: $DATAPLANE_PROMTOOL, or promtool on
// PATH (Debian's prometheus package, which scripts/test.sh installs). The
// test fails without it; it never skips.
func promtool(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("DATAPLANE_PROMTOOL"); p != "" {
		return p
	}
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found (scripts/test.sh installs Debian's prometheus package; or set DATAPLANE_PROMTOOL): %v", err)
	}
	return p
}

// TestAlertRules checks the rules with promtool (syntax, then the unit
// tests in prometheus/rules_test.yaml: each alert fires on its state after
// its for:, and stays silent on healthy series).
func TestAlertRules(t *testing.T) {
	bin := promtool(t)
	for _, args := range [][]string{{"check", "rules", "rules.yaml"}, {"test", "rules", "rules_test.yaml"}} {
		cmd := exec.Command(bin, args...)
		cmd.Dir = "prometheus"
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// ruleFile is the part of a Prometheus rule file the checks read.
type ruleFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert       string            `json:"alert"`
			Expr        string            `json:"expr"`
			For         string            `json:"for"`
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"rules"`
	} `json:"groups"`
}

// githubAnchor is the anchor GitHub gives a Markdown heading.
func githubAnchor(heading string) string {
	s := strings.ToLower(strings.TrimSpace(heading))
	s = regexp.MustCompile(`[^a-z0-9 _-]`).ReplaceAllString(s, "")
	return strings.ReplaceAll(s, " ", "-")
}

// TestAlertRunbooks checks every alert has a for:, a severity of critical,
// warning or info, a summary, and a runbook_url whose anchor is a heading
// of the README that names the alert's metrics; and that every alert is
// tested by prometheus/rules_test.yaml.
func TestAlertRunbooks(t *testing.T) {
	b, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	if err := yaml.UnmarshalStrict(b, &rf); err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string]string{} // anchor -> section text
	heads := regexp.MustCompile(`(?m)^#{1,6} (.+)$`).FindAllStringSubmatchIndex(string(readme), -1)
	for i, h := range heads {
		end := len(readme)
		if i+1 < len(heads) {
			end = heads[i+1][0]
		}
		sections[githubAnchor(string(readme[h[2]:h[3]]))] = string(readme[h[1]:end])
	}
	tests, err := os.ReadFile("prometheus/rules_test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	metricRE := regexp.MustCompile(`dataplane_[a-z_]+`)
	n := 0
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			n++
			if r.For == "" {
				t.Errorf("%s: no for:", r.Alert)
			}
			switch r.Labels["severity"] {
			case "critical", "warning", "info":
			default:
				t.Errorf("%s: severity %q, want critical, warning or info", r.Alert, r.Labels["severity"])
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: want summary and description annotations", r.Alert)
			}
			u := r.Annotations["runbook_url"]
			_, anchor, _ := strings.Cut(u, "#")
			sec, ok := sections[anchor]
			if !strings.HasPrefix(u, "https://github.com/dataplane/dataplane#") || !ok {
				t.Errorf("%s: runbook_url %q is not a README section", r.Alert, u)
				continue
			}
			for _, m := range metricRE.FindAllString(r.Expr, -1) {
				if !strings.Contains(sec, m) {
					t.Errorf("%s: its runbook section does not name %s", r.Alert, m)
				}
			}
			if !strings.Contains(string(tests), "alertname: "+r.Alert+"\n") {
				t.Errorf("%s: not tested in prometheus/rules_test.yaml", r.Alert)
			}
		}
	}
	if n < 6 {
		t.Errorf("%d alerts, want at least 6", n)
	}
}

// TestChartRulesCopy checks the chart's files/rules.yaml (the
// PrometheusRule's spec; Helm cannot read files outside the chart) equals
// prometheus/rules.yaml; -update writes it.
func TestChartRulesCopy(t *testing.T) {
	src, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	want := "# Generated: a copy of deploy/prometheus/rules.yaml, do not edit. From deploy/:\n#   go test -run TestChartRulesCopy -update .\n" + string(src)
	checkGenerated(t, filepath.Dir(chartRulesFile), map[string]string{filepath.Base(chartRulesFile): want}, func(string) bool { return true })
}

// TestAlertMetricsExist checks every dataplane_* metric the alert rules
// name is defined in the dataplane module's source: some non-test Go file
// holds both its subsystem and its name as string literals (Subsystem
// "cache", Name "max_bytes"; the namespace "dataplane" may come from
// metricset). A renamed metric fails
// here at once, including in the alerts devcluster's TestAlertsFire does
// not provoke.
func TestAlertMetricsExist(t *testing.T) {
	b, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var sources []string
	err = filepath.WalkDir("..", func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p != ".." && (d.Name() == "deploy" || strings.HasPrefix(d.Name(), ".")) {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") {
			src, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sources = append(sources, string(src))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	metrics := map[string]bool{}
	for _, m := range regexp.MustCompile(`dataplane_[a-z_]+`).FindAllString(string(b), -1) {
		metrics[m] = true
	}
	if len(metrics) < 6 {
		t.Fatalf("rules name %d metrics, want at least 6", len(metrics))
	}
	for m := range metrics {
		parts := strings.Split(strings.TrimPrefix(m, "dataplane_"), "_")
		found := false
		for i := 1; i < len(parts) && !found; i++ {
			sub, name := `"`+strings.Join(parts[:i], "_")+`"`, `"`+strings.Join(parts[i:], "_")+`"`
			for _, src := range sources {
				if strings.Contains(src, sub) && strings.Contains(src, name) {
					found = true
					break
				}
			}
		}
		if !found {
			t.Errorf("rules name %s: no Go file of the dataplane module defines it", m)
		}
	}
}
