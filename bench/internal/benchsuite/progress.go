package benchsuite

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// Progress shows how far a long run is: a bar redrawn in place on a
// terminal, one line per step otherwise (logs, CI).
type Progress struct {
	w   io.Writer
	tty bool
	now func() time.Time

	mu    sync.Mutex
	total int
	done  int
	start time.Time
}

// NewProgress writes to w; it draws a bar when w is a terminal.
func NewProgress(w io.Writer) *Progress {
	tty := false
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return &Progress{w: w, tty: tty, now: time.Now}
}

// AddTotal grows the number of steps the bar counts to.
func (p *Progress) AddTotal(n int) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.start.IsZero() {
		p.start = p.now()
	}
	p.total += n
}

// Step marks one step done and shows label.
func (p *Progress) Step(label string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done++
	p.draw(label)
}

// Note shows label without counting a step (what is running now).
func (p *Progress) Note(label string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.draw(label)
}

// Finish ends the bar's line.
func (p *Progress) Finish() {
	if p == nil || !p.tty {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintln(p.w)
}

const barWidth = 30

func (p *Progress) draw(label string) {
	if p.start.IsZero() {
		p.start = p.now()
	}
	total := max(p.total, p.done, 1)
	filled := p.done * barWidth / total
	elapsed := p.now().Sub(p.start).Truncate(time.Second)
	eta := ""
	if p.done > 0 && p.done < total {
		left := time.Duration(float64(p.now().Sub(p.start)) / float64(p.done) * float64(total-p.done))
		eta = fmt.Sprintf(" eta %s", left.Truncate(time.Second))
	}
	line := fmt.Sprintf("[%s%s] %d/%d %s%s %s",
		strings.Repeat("=", filled), strings.Repeat(" ", barWidth-filled),
		p.done, total, elapsed, eta, label)
	if p.tty {
		// \r and clear-to-end-of-line: redraw in place.
		fmt.Fprintf(p.w, "\r\033[K%s", truncate(line, 150))
		return
	}
	fmt.Fprintln(p.w, line)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}
