package demo

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Progress prints what the demo does, for a person watching: one line per step
// with the time since the start, details indented under it. It is safe for
// concurrent use (the kubelet reports from its workers).
type Progress struct {
	w      io.Writer
	start  time.Time
	onStep func()
	mu     sync.Mutex
}

// NewProgress writes to w. onStep, if set, runs after each step line (the program
// records its processes then).
func NewProgress(w io.Writer, onStep func()) *Progress {
	return &Progress{w: w, start: time.Now(), onStep: onStep}
}

// Step prints a step.
func (p *Progress) Step(format string, args ...any) {
	p.mu.Lock()
	fmt.Fprintf(p.w, "[%6.1fs] %s\n", time.Since(p.start).Seconds(), fmt.Sprintf(format, args...))
	p.mu.Unlock()
	if p.onStep != nil {
		p.onStep()
	}
}

// Detail prints a line under the current step.
func (p *Progress) Detail(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, line := range strings.Split(fmt.Sprintf(format, args...), "\n") {
		fmt.Fprintf(p.w, "          %s\n", line)
	}
}

// Text prints lines as they are.
func (p *Progress) Text(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format, args...)
}

// Elapsed is the time since the demo started.
func (p *Progress) Elapsed() time.Duration { return time.Since(p.start) }
