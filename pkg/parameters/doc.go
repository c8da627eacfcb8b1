// Package parameters parses and validates the StorageClass parameters of a pvnfs
// volume into a typed Parameters value with every default resolved. Every error names
// the parameter and what it accepts, because the user reads it in a PVC event.
//
// It does not touch Kubernetes: checks that need the API (does the backend
// StorageClass exist?) belong to the controller.
package parameters
