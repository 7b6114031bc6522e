package deploy

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/action"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	release "helm.sh/helm/v4/pkg/release/v1"
	"helm.sh/helm/v4/pkg/storage"
	"helm.sh/helm/v4/pkg/storage/driver"
	"sigs.k8s.io/yaml"

	corev1 "k8s.io/api/core/v1"
)

// update rewrites what is generated from the chart: deploy/kubernetes/ (the
// default rendering), the golden files in testdata/chart/ and the chart's
// copy of deploy/prometheus/rules.yaml.
var update = flag.Bool("update", false, "rewrite deploy/kubernetes, testdata/chart/*.yaml and the chart's files/rules.yaml from their sources")

const (
	chartDir    = "helm/dataplane"
	releaseName = "dataplane"
)

// valuesFiles are the values the chart is rendered with in the tests: the
// defaults ("" ) and each example under helm/dataplane/examples.
func valuesFiles(t *testing.T) []string {
	t.Helper()
	ex, err := filepath.Glob(filepath.Join(chartDir, "examples", "*.yaml"))
	if err != nil || len(ex) < 3 {
		t.Fatalf("want at least 3 example values files in %s/examples, got %v (%v)", chartDir, ex, err)
	}
	return append([]string{""}, ex...)
}

// valuesName names a values file in test output and golden files.
func valuesName(file string) string {
	if file == "" {
		return "default"
	}
	return strings.TrimSuffix(filepath.Base(file), ".yaml")
}

func readValues(t *testing.T, file string) map[string]any {
	t.Helper()
	vals := map[string]any{}
	if file == "" {
		return vals
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &vals); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return vals
}

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	return ch
}

// render renders the chart as `helm template dataplane deploy/helm/dataplane
// -n dataplane -f file` does, with Helm's own install action and no cluster.
func render(t *testing.T, ch *chart.Chart, file string) *release.Release {
	t.Helper()
	cfg := &action.Configuration{Releases: storage.Init(driver.NewMemory())}
	cfg.SetLogger(slog.NewTextHandler(io.Discard, nil))
	in := action.NewInstall(cfg)
	in.DryRunStrategy = action.DryRunClient
	in.ReleaseName = releaseName
	in.Namespace = namespace
	in.Replace = true
	r, err := in.RunWithContext(context.Background(), ch, readValues(t, file))
	if err != nil {
		t.Fatalf("render with %s values: %v", valuesName(file), err)
	}
	rel, ok := r.(*release.Release)
	if !ok {
		t.Fatalf("render returned %T", r)
	}
	return rel
}

// TestChartLint lints the chart as `helm lint --strict` does, with the
// default values and with each example's: no error and no warning.
func TestChartLint(t *testing.T) {
	for _, f := range valuesFiles(t) {
		t.Run(valuesName(f), func(t *testing.T) {
			l := action.NewLint()
			l.Strict = true
			l.Namespace = namespace
			res := l.Run([]string{chartDir}, readValues(t, f))
			for _, err := range res.Errors {
				t.Errorf("lint: %v", err)
			}
			for _, m := range res.Messages {
				if m.Severity >= support.WarningSev {
					t.Errorf("lint: %s", m)
				}
			}
			if res.TotalChartsLinted != 1 {
				t.Errorf("linted %d charts, want 1", res.TotalChartsLinted)
			}
		})
	}
}

// sourceRE splits Helm's manifest into documents by their "# Source:" line.
var sourceRE = regexp.MustCompile(`(?m)^---\n# Source: (\S+)\n`)

// documents returns each rendered document of rel keyed by the template
// file it came from (base name, in order), hooks included if hooks is set.
func documents(rel *release.Release, hooks bool) map[string][]string {
	out := map[string][]string{}
	m := "\n" + rel.Manifest
	idx := sourceRE.FindAllStringSubmatchIndex(m, -1)
	for i, loc := range idx {
		end := len(m)
		if i+1 < len(idx) {
			end = idx[i+1][0]
		}
		src := filepath.Base(m[loc[2]:loc[3]])
		out[src] = append(out[src], strings.TrimSpace(m[loc[1]:end])+"\n")
	}
	if hooks {
		for _, h := range rel.Hooks {
			src := filepath.Base(h.Path)
			out[src] = append(out[src], strings.TrimSpace(h.Manifest)+"\n")
		}
	}
	return out
}

// joinDocs writes documents as one YAML stream.
func joinDocs(docs []string) string { return strings.Join(docs, "---\n") }

const generatedHeader = "# Generated from deploy/helm/dataplane/templates/%s with the chart's default\n# values (release %q, namespace %q): do not edit, edit the chart. From deploy/:\n#   go test -run TestPlainManifests -update .\n"

// plainManifests returns the files of deploy/kubernetes as the chart
// renders them with the default values: one YAML file per template, and
// config/<command>.json, the -config file of each ConfigMap.
func plainManifests(t *testing.T, ch *chart.Chart) map[string]string {
	t.Helper()
	rel := render(t, ch, "")
	files := map[string]string{}
	docs := documents(rel, false)
	for src, d := range docs {
		files[src] = fmt.Sprintf(generatedHeader, src, releaseName, namespace) + joinDocs(d)
	}
	objs := decodeDocs(t, "default", flatten(docs))
	configMaps := map[string]*corev1.ConfigMap{}
	for _, o := range objs {
		if cm, ok := o.obj.(*corev1.ConfigMap); ok {
			configMaps[cm.Name] = cm
		}
	}
	for _, w := range workloads(objs) {
		for _, v := range w.pod.Spec.Volumes {
			if cm := configMaps[configMapName(v)]; cm != nil {
				files[filepath.Join("config", w.pod.Spec.Containers[0].Args[0]+".json")] = strings.TrimRight(cm.Data["config.json"], "\n") + "\n"
			}
		}
	}
	return files
}

// flatten returns every document of docs, ordered by template file.
func flatten(docs map[string][]string) []string {
	keys := make([]string, 0, len(docs))
	for k := range docs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []string
	for _, k := range keys {
		out = append(out, docs[k]...)
	}
	return out
}

// TestPlainManifests checks that deploy/kubernetes is the chart rendered
// with its default values, file for file (-update writes it).
func TestPlainManifests(t *testing.T) {
	want := plainManifests(t, loadChart(t))
	checkGenerated(t, "kubernetes", want, func(rel string) bool {
		return strings.HasSuffix(rel, ".yaml") || strings.HasSuffix(rel, ".json")
	})
}

// checkGenerated compares the files under dir with want (paths relative
// to dir), or writes them with -update; a file under dir that keep accepts
// and want lacks is stale.
func checkGenerated(t *testing.T, dir string, want map[string]string, keep func(string) bool) {
	t.Helper()
	var have []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if keep(rel) {
			have = append(have, rel)
		}
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for _, rel := range have {
		if _, ok := want[rel]; !ok {
			if *update {
				if err := os.Remove(filepath.Join(dir, rel)); err != nil {
					t.Fatal(err)
				}
				continue
			}
			t.Errorf("%s/%s is not generated from the chart (stale? run with -update)", dir, rel)
		}
	}
	names := make([]string, 0, len(want))
	for rel := range want {
		names = append(names, rel)
	}
	sort.Strings(names)
	for _, rel := range names {
		p := filepath.Join(dir, rel)
		if *update {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(want[rel]), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(p)
		if err != nil {
			t.Errorf("%v (run with -update)", err)
			continue
		}
		if string(got) != want[rel] {
			t.Errorf("%s differs from what the chart renders (run with -update):\n%s", p, firstDiff(string(got), want[rel]))
		}
	}
}

// firstDiff shows the first differing line of two texts.
func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < max(len(g), len(w)); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return fmt.Sprintf("line %d:\n  have %q\n  want %q", i+1, gl, wl)
		}
	}
	return "(same lines)"
}

// TestChartGolden renders the chart with the default values and each
// example's, hooks included, and compares it with testdata/chart/<name>.yaml
// (-update writes them): a change to a template shows in review as a
// change to what it renders.
func TestChartGolden(t *testing.T) {
	ch := loadChart(t)
	want := map[string]string{}
	for _, f := range valuesFiles(t) {
		rel := render(t, ch, f)
		want[valuesName(f)+".yaml"] = joinDocs(flatten(documents(rel, true)))
	}
	checkGenerated(t, filepath.Join("testdata", "chart"), want, func(string) bool { return true })
}

// TestChartRenders decodes every object the chart renders, with the
// default values and each example's, strictly into its k8s.io/api (or
// Prometheus Operator) type, and checks what a deployment relies on.
func TestChartRenders(t *testing.T) {
	ch := loadChart(t)
	served := servedPaths(t)
	for _, f := range valuesFiles(t) {
		t.Run(valuesName(f), func(t *testing.T) {
			rel := render(t, ch, f)
			objs := decodeDocs(t, valuesName(f), flatten(documents(rel, true)))
			checkRendered(t, objs, served)
		})
	}
}

// servedPaths returns the paths the dataplane binary's HTTP handlers
// register with GET: each route pattern literal "GET /path" in the
// dataplane module's non-test source one directory up (passed to
// mux.HandleFunc or kept in a route table).
func servedPaths(t *testing.T) map[string]bool {
	t.Helper()
	re := regexp.MustCompile(`"GET (/[^" {]*)"`)
	paths := map[string]bool{}
	err := filepath.WalkDir("..", func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "deploy" || strings.HasPrefix(d.Name(), ".")) && p != ".." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			paths[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/readyz", "/healthz", "/metrics"} {
		if !paths[p] {
			t.Fatalf("the dataplane source registers no GET %s (found %v)", p, slices.Sorted(func(yield func(string) bool) {
				for p := range paths {
					if !yield(p) {
						return
					}
				}
			}))
		}
	}
	return paths
}

// TestChartSchemaRefusesTypos checks values.schema.json is in force: a
// misspelt or mistyped value fails lint and install instead of being
// ignored.
func TestChartSchemaRefusesTypos(t *testing.T) {
	ch := loadChart(t)
	for _, vals := range []map[string]any{
		{"sentinel": map[string]any{"replica": 3}},
		{"cachenode": map[string]any{"replicas": "two"}},
		{"gossip": map[string]any{"seeds": []any{"no-port"}}},
		{"origni": "s3://x"},
	} {
		l := action.NewLint()
		l.Strict = true
		l.Namespace = namespace
		res := l.Run([]string{chartDir}, vals)
		failed := len(res.Errors) > 0
		for _, m := range res.Messages {
			failed = failed || m.Severity >= support.ErrorSev
		}
		if !failed {
			t.Errorf("lint accepted values %v", vals)
		}
		cfg := &action.Configuration{Releases: storage.Init(driver.NewMemory())}
		cfg.SetLogger(slog.NewTextHandler(io.Discard, nil))
		in := action.NewInstall(cfg)
		in.DryRunStrategy, in.ReleaseName, in.Namespace, in.Replace = action.DryRunClient, releaseName, namespace, true
		if _, err := in.RunWithContext(context.Background(), ch, vals); err == nil {
			t.Errorf("install accepted values %v", vals)
		}
	}
}
