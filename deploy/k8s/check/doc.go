// Package check holds the test that renders deploy/k8s with kustomize's Go
// API, decodes every object strictly, and cross-checks the manifests
// against the services' code, deploy/ files and docker-compose.yml. It has
// no code of its own; see k8s_test.go.
package check
