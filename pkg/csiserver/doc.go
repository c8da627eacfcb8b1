// Package csiserver builds the gRPC server the CO talks to: it listens on the unix
// socket, registers the identity, controller and node services, logs every call with
// its secrets stripped, and is the one place where errors become gRPC status codes.
//
// It knows nothing of Kubernetes objects or mounts beyond classifying their errors.
package csiserver
