// Package podutil reads pod status the same way in the controller, the tests, the
// demo and the benchmarks.
package podutil

import corev1 "k8s.io/api/core/v1"

// Ready reports whether the pod's Ready condition is True. It does not look at
// the deletion timestamp: callers that must not count a terminating pod (one
// still Ready until its containers stop) check that themselves.
func Ready(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
