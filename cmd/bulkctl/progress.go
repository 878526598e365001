package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/bulkbackup/bulkbackup/pkg/config"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
)

// progress shows a job's progress: a bar redrawn in place on a terminal,
// as wide as the terminal and never wider, plain lines otherwise: one per
// state, and while running one every few seconds that the job moves, or a
// note every minute that it does not (a log of a stuck job does not fill
// with the same line). With quiet (--json off a terminal, where the output
// is for a program) it shows nothing.
type progress struct {
	w     io.Writer
	tty   bool
	quiet bool
	width func() int // the terminal's columns
	now   func() time.Time
	drawn bool
	// Off a terminal: the last line's state and time, the bytes done it
	// showed, when the bytes done last moved, and the last message.
	lastState   string
	lastLine    time.Time
	lastBytes   int64
	lastMoved   time.Time
	lastMessage string
}

// Off a terminal, a running job's line comes at most every progressEvery
// while it moves, and every stuckEvery while it does not.
const (
	progressEvery = 5 * time.Second
	stuckEvery    = time.Minute
)

// defaultWidth is assumed when a terminal does not say its width.
const defaultWidth = 80

func newProgress(w io.Writer, json bool) *progress {
	p := &progress{w: w, tty: isTerminal(w), width: func() int { return terminalWidth(w) }}
	p.quiet = json && !p.tty
	return p
}

// terminalWidth returns the columns of the terminal w is, or defaultWidth.
func terminalWidth(w io.Writer) int {
	if f, ok := w.(*os.File); ok {
		if cols, _, err := term.GetSize(int(f.Fd())); err == nil && cols > 0 {
			return cols
		}
	}
	return defaultWidth
}

func (p *progress) update(ev *queue.Event) {
	if p.quiet {
		return
	}
	if ev.Message != "" && ev.Message != p.lastMessage {
		p.clear()
		fmt.Fprintf(p.w, "%s\n", ev.Message)
	}
	p.lastMessage = ev.Message
	pr := ev.Progress
	if p.tty {
		if ev.State == queue.StateRunning && pr.BytesTotal > 0 {
			p.draw(pr)
		}
		return
	}
	now := time.Now()
	if p.now != nil {
		now = p.now()
	}
	if pr.BytesDone != p.lastBytes || p.lastMoved.IsZero() {
		p.lastMoved = now
	}
	s, note := summary(pr), ""
	switch {
	case ev.State != p.lastState:
	case ev.State != queue.StateRunning || pr.BytesTotal == 0:
		return // said already
	case pr.BytesDone != p.lastBytes:
		if now.Sub(p.lastLine) < progressEvery {
			return
		}
	case now.Sub(p.lastLine) < stuckEvery:
		return
	default:
		note = fmt.Sprintf("  (no progress for %s)", now.Sub(p.lastMoved).Round(time.Second))
	}
	switch {
	case ev.State == queue.StateSucceeded:
		s = finalSummary(pr)
	case queue.Final(ev.State): // no time left to estimate
		pr.ETASeconds = 0
		s = summary(pr)
	}
	fmt.Fprintln(p.w, strings.TrimSpace(fmt.Sprintf("%-10s %s", ev.State, s))+note)
	p.lastState, p.lastLine, p.lastBytes = ev.State, now, pr.BytesDone
}

// draw redraws the bar line: "[====    ]  42% 1.2 GiB / 2.9 GiB  310 MB/s
// ETA 6s", fitted to the terminal: the bar shrinks, then goes, then the
// text is cut, so the line never wraps (one column is left free: some
// terminals wrap on writing the last one).
func (p *progress) draw(pr queue.Progress) {
	fmt.Fprint(p.w, "\r"+barLine(pr, p.width()-1)+"\033[K")
	p.drawn = true
}

// barLine renders the progress line in at most width columns.
func barLine(pr queue.Progress, width int) string {
	const maxBar, minBar = 40, 10
	frac := min(max(float64(pr.BytesDone)/float64(pr.BytesTotal), 0), 1)
	text := fmt.Sprintf("%3.0f%% %s", frac*100, summary(pr))
	line := text
	if bar := min(maxBar, width-len(text)-3); bar >= minBar {
		filled := int(frac * float64(bar))
		line = "[" + strings.Repeat("=", filled) + strings.Repeat(" ", bar-filled) + "] " + text
	}
	if len(line) > width { // the text is ASCII
		line = line[:max(width, 0)]
	}
	return line
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

// finalSummary is a succeeded job's line: the whole of it, not a fraction
// (a sparse restore writes less than its size, holes being zeros
// already, and must not read as unfinished).
func finalSummary(pr queue.Progress) string {
	if pr.BytesTotal == 0 {
		return ""
	}
	return fmt.Sprintf("%s  %.0f MB/s", config.FormatBytes(pr.BytesTotal), pr.MBps)
}
