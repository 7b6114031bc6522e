// Package deploy holds no code: it is the module of the tests that check
// the deployment files in this directory offline, without a cluster: the
// Helm chart (helm/dataplane: lint, golden renderings of each example
// values file, strict decoding into the k8s.io/api types, references
// between objects), the plain Kubernetes manifests rendered from it
// (kubernetes/), the alert rules (prometheus/, with promtool), the
// Dockerfile and the systemd unit. It is its own module so that the
// dataplane module depends on neither Helm nor k8s.io/api.
//
// Generated files (deploy/kubernetes, testdata/chart, the chart's copy of
// the rules) are written again by
//
//	go test -run 'TestPlainManifests|TestChartGolden|TestChartRulesCopy' -update .
package deploy
