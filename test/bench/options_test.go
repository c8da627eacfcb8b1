package main

import (
	"slices"
	"strings"
	"testing"
)

func TestParseCounts(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		want    []int
		wantErr bool
	}{
		{"list", "1,50,200", []int{1, 50, 200}, false},
		{"spaces and empty items", " 1 , ,5", []int{1, 5}, false},
		{"zero", "0", nil, true},
		{"negative", "-1", nil, true},
		{"not a number", "ten", nil, true},
		{"empty", "", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseCounts(tc.in)
			if (err != nil) != tc.wantErr || !slices.Equal(got, tc.want) {
				t.Errorf("parseCounts(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		change  func(o *options)
		wantErr string
	}{
		{"defaults", func(*options) {}, ""},
		{"one phase", func(o *options) { o.phases = "fanout" }, ""},
		{"unknown phase", func(o *options) { o.phases = "fanout,speed" }, `unknown phase "speed"`},
		{"bad sizes", func(o *options) { o.sizes = "1,x" }, "-sizes"},
		{"bad fan-out targets", func(o *options) { o.fanoutTargets = "0" }, "-fanout-targets"},
		{"no output", func(o *options) { o.out = "" }, "-out"},
		{"no volumes", func(o *options) { o.footprintVolumes = 0 }, "-footprint-volumes"},
		{"no deadline", func(o *options) { o.timeout = 0 }, "-timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := defaultOptions()
			tc.change(&o)
			err := o.validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("validate: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("validate = %v, want an error about %s", err, tc.wantErr)
			}
		})
	}
}

func TestDefaultsRunEveryPhase(t *testing.T) {
	o := defaultOptions()
	for _, p := range []string{phaseFanout, phaseProvisioning, phaseFootprint, phaseDataPath} {
		if !o.runs(p) {
			t.Errorf("the default run skips %s", p)
		}
	}
}
