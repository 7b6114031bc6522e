// Package deploy holds no code: it is the module of the tests that check
// the deployment files in this directory (Kubernetes manifests, the
// Dockerfile, the Grafana dashboard's layout) offline. It is its own module
// so that the dataplane module does not depend on k8s.io/api.
package deploy
