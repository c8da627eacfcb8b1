package podutil

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestReady(t *testing.T) {
	cond := func(typ corev1.PodConditionType, s corev1.ConditionStatus) corev1.PodCondition {
		return corev1.PodCondition{Type: typ, Status: s}
	}
	tests := []struct {
		name  string
		conds []corev1.PodCondition
		want  bool
	}{
		{"no conditions", nil, false},
		{"scheduled only", []corev1.PodCondition{cond(corev1.PodScheduled, corev1.ConditionTrue)}, false},
		{"ready", []corev1.PodCondition{cond(corev1.PodScheduled, corev1.ConditionTrue), cond(corev1.PodReady, corev1.ConditionTrue)}, true},
		{"not ready", []corev1.PodCondition{cond(corev1.PodReady, corev1.ConditionFalse)}, false},
		{"unknown", []corev1.PodCondition{cond(corev1.PodReady, corev1.ConditionUnknown)}, false},
	}
	for _, tc := range tests {
		p := &corev1.Pod{Status: corev1.PodStatus{Conditions: tc.conds}}
		if got := Ready(p); got != tc.want {
			t.Errorf("%s: Ready = %v, want %v", tc.name, got, tc.want)
		}
	}
}
