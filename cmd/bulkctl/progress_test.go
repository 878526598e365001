package main

import (
	"strings"
	"testing"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/queue"
)

// TestProgressStuck checks the lines off a terminal while a job runs: one
// every few seconds while it moves, none for the same progress again, and
// a note a minute later that it makes none; a repeated message once.
func TestProgressStuck(t *testing.T) {
	var out strings.Builder
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := &progress{w: &out, now: func() time.Time { return clock }}
	at := func(bytes int64) *queue.Event {
		return &queue.Event{State: queue.StateRunning, Message: "waiting for a reader on host h",
			Progress: queue.Progress{BytesDone: bytes << 20, BytesTotal: 100 << 20, MBps: 10}}
	}
	for i := range 200 { // one event a second
		bytes := int64(min(i, 20)) // moves for 20 s, then is stuck
		p.update(at(bytes))
		clock = clock.Add(time.Second)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := []string{
		"waiting for a reader on host h",
		"running    0 B / 100 MiB  10 MB/s",
		"running    5 MiB / 100 MiB  10 MB/s",
		"running    10 MiB / 100 MiB  10 MB/s",
		"running    15 MiB / 100 MiB  10 MB/s",
		"running    20 MiB / 100 MiB  10 MB/s",
		"running    20 MiB / 100 MiB  10 MB/s  (no progress for 1m0s)",
		"running    20 MiB / 100 MiB  10 MB/s  (no progress for 2m0s)",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("lines:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}
