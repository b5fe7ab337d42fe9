// Package packaging checks how peerdb-maintenance is shipped: the Dockerfile and the binary it builds,
// the Helm chart and its example parent chart, the compose examples and the release configuration.
// It is a module of its own so that the libraries it reads them with (Kubernetes' API types, the
// Compose specification's loader, BuildKit's Dockerfile parser) stay out of the product's go.mod.
// The checks are all in its tests.
package packaging
