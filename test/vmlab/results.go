package vmlab

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// Event is one test2json event of the guest test binary.
type Event struct {
	Action  string
	Test    string
	Output  string
	Elapsed float64
}

// Events converts the guest test binary's -test.v=test2json output into events
// with go tool test2json, as go test does for a local test binary.
func Events(ctx context.Context, raw []byte) ([]Event, error) {
	cmd := exec.CommandContext(ctx, "go", "tool", "test2json")
	cmd.Stdin = bytes.NewReader(raw)
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go tool test2json: %w", err)
	}
	var events []Event
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var e Event
		if err := dec.Decode(&e); err != nil {
			return events, fmt.Errorf("decoding test2json output: %w", err)
		}
		events = append(events, e)
	}
	return events, nil
}

// Case is a guest test with its output, its outcome and its subtests.
type Case struct {
	Name    string // the last element of the test's name
	Action  string // pass, fail or skip; "" when the guest never finished it
	Elapsed float64
	Output  []string
	Subs    []*Case
}

// Tree arranges events by test, subtests below their parents, in the order the
// guest ran them. Output outside any test (the binary's own) goes to top.
func Tree(events []Event) (cases []*Case, top []string) {
	byName := map[string]*Case{}
	var get func(name string) *Case
	get = func(name string) *Case {
		if c, ok := byName[name]; ok {
			return c
		}
		parent, last, nested := cutLast(name)
		c := &Case{Name: last}
		byName[name] = c
		if nested {
			p := get(parent)
			p.Subs = append(p.Subs, c)
		} else {
			cases = append(cases, c)
		}
		return c
	}
	for _, e := range events {
		if e.Test == "" {
			if e.Output != "" {
				top = append(top, e.Output)
			}
			continue
		}
		c := get(e.Test)
		switch e.Action {
		case "output":
			c.Output = append(c.Output, e.Output)
		case "pass", "fail", "skip":
			c.Action, c.Elapsed = e.Action, e.Elapsed
		}
	}
	return cases, top
}

func cutLast(name string) (parent, last string, nested bool) {
	i := strings.LastIndexByte(name, '/')
	if i < 0 {
		return "", name, false
	}
	return name[:i], name[i+1:], true
}

// Replay reports c as a subtest of t: its output as t's log, its outcome as
// t's, and its subtests below it. A guest test that never finished fails.
func Replay(t *testing.T, c *Case) {
	t.Run(c.Name, func(t *testing.T) {
		var out []string
		for _, line := range c.Output {
			if l := strings.TrimRight(line, "\n"); strings.TrimSpace(l) != "" && !isFrame(l) {
				out = append(out, l)
			}
		}
		if len(out) > 0 {
			t.Log("guest output:\n" + strings.Join(out, "\n"))
		}
		for _, s := range c.Subs {
			Replay(t, s)
		}
		switch c.Action {
		case "fail":
			t.Fail()
		case "skip":
			t.SkipNow()
		case "":
			t.Errorf("the guest never finished %s (the guest stopped or hung while it ran)", c.Name)
		}
	})
}

// isFrame tells go test's own lines (=== RUN, --- PASS) from the test's output.
func isFrame(l string) bool {
	s := strings.TrimSpace(l)
	for _, p := range []string{"=== RUN", "=== PAUSE", "=== CONT", "=== NAME", "--- PASS", "--- FAIL", "--- SKIP"} {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
