package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

// progress shows a transfer as one self-rewriting line on stderr, only
// when stderr is a terminal and --quiet is not set.
type progress struct {
	mu      sync.Mutex
	w       io.Writer // nil when disabled
	label   string
	total   int64
	start   time.Time
	last    time.Time
	lastLen int
}

func (a *app) newProgress(label string, total int64) *progress {
	p := &progress{label: label, total: total, start: time.Now()}
	if f, ok := a.stderr.(*os.File); ok && !a.flagQuiet && term.IsTerminal(int(f.Fd())) {
		p.w = a.stderr
	}
	return p
}

// update reports n bytes done so far. It redraws at most ten times a
// second.
func (p *progress) update(n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.w == nil {
		return
	}
	now := time.Now()
	if now.Sub(p.last) < 100*time.Millisecond && (p.total <= 0 || n < p.total) {
		return
	}
	p.last = now
	p.draw(progressLine(p.label, n, p.total, now.Sub(p.start)))
}

// progressLine renders "label: 45% (12.30MB/s)", or the byte count when
// the total is unknown.
func progressLine(label string, n, total int64, elapsed time.Duration) string {
	rate := ""
	if secs := elapsed.Seconds(); secs > 0 {
		rate = fmt.Sprintf(" (%s/s)", sizeSI(int64(float64(n)/secs)))
	}
	if total > 0 {
		pct := min(100, n*100/total)
		return fmt.Sprintf("%s: %d%%%s", label, pct, rate)
	}
	return fmt.Sprintf("%s: %s%s", label, sizeSI(n), rate)
}

func (p *progress) draw(line string) {
	pad := ""
	if len(line) < p.lastLen {
		pad = strings.Repeat(" ", p.lastLen-len(line))
	}
	fmt.Fprintf(p.w, "\r%s%s", line, pad)
	p.lastLen = len(line)
}

// done erases the progress line.
func (p *progress) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.w == nil || p.lastLen == 0 {
		return
	}
	fmt.Fprintf(p.w, "\r%s\r", strings.Repeat(" ", p.lastLen))
	p.lastLen = 0
	p.w = nil
}
