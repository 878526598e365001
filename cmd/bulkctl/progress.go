package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/config"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
)

// progress shows a job's progress: a bar redrawn in place on a terminal,
// plain lines every few seconds otherwise.
type progress struct {
	w         io.Writer
	tty       bool
	lastState string
	lastLine  time.Time
	drawn     bool
}

func newProgress(w io.Writer) *progress { return &progress{w: w, tty: isTerminal(w)} }

func (p *progress) update(ev *queue.Event) {
	if ev.Message != "" {
		p.clear()
		fmt.Fprintf(p.w, "%s\n", ev.Message)
	}
	pr := ev.Progress
	if p.tty {
		if ev.State == queue.StateRunning && pr.BytesTotal > 0 {
			p.draw(pr)
		}
		return
	}
	if ev.State != p.lastState || (ev.State == queue.StateRunning && time.Since(p.lastLine) > 5*time.Second && pr.BytesTotal > 0) {
		fmt.Fprintln(p.w, strings.TrimSpace(fmt.Sprintf("%-10s %s", ev.State, summary(pr))))
		p.lastState, p.lastLine = ev.State, time.Now()
	}
}

func (p *progress) draw(pr queue.Progress) {
	const width = 30
	frac := float64(pr.BytesDone) / float64(pr.BytesTotal)
	filled := int(frac * width)
	bar := strings.Repeat("=", filled) + strings.Repeat(" ", width-filled)
	fmt.Fprintf(p.w, "\r[%s] %3.0f%% %s", bar, frac*100, summary(pr))
	p.drawn = true
}

func (p *progress) clear() {
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
		p.drawn = false
	}
}

func (p *progress) finish() { p.clear() }

func summary(pr queue.Progress) string {
	if pr.BytesTotal == 0 {
		return ""
	}
	s := fmt.Sprintf("%s / %s  %.0f MB/s", config.FormatBytes(pr.BytesDone), config.FormatBytes(pr.BytesTotal), pr.MBps)
	if pr.ETASeconds > 0 && pr.BytesDone < pr.BytesTotal {
		s += fmt.Sprintf("  ETA %s", (time.Duration(pr.ETASeconds) * time.Second).String())
	}
	return s
}
