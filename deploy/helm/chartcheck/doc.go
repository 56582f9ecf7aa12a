// Package chartcheck tests the Helm chart in deploy/helm/gatehouse: it
// renders the chart with Helm's own engine for several value sets, decodes
// every object strictly into the Kubernetes API types, compares the result
// with golden files, and runs the real gatehouse on the rendered config.
//
// It is a module of its own so that Helm and the Kubernetes API modules
// stay out of gatehouse's go.mod.
package chartcheck
