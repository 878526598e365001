package queue_test

import (
	"context"
	"testing"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/queue"
)

// TestFollowEndsFromRecord follows jobs whose events say less than their
// records: one whose final event was lost (published while its stream had
// no leader) ends as its record says, and one whose record says it is
// still running is followed on, not ended.
func TestFollowEndsFromRecord(t *testing.T) {
	t.Parallel()
	js := newJetStream(t)
	ctx := t.Context()
	if err := queue.Setup(ctx, js, queue.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, queue.BucketJobs)
	if err != nil {
		t.Fatal(err)
	}
	put := func(job *queue.Job, events ...string) {
		t.Helper()
		if _, err := kv.Put(ctx, job.ID, queue.Encode(job)); err != nil {
			t.Fatal(err)
		}
		for _, state := range events {
			ev := *job.Event("")
			ev.State = state
			if _, err := js.Publish(ctx, queue.EventSubject(job.ID), queue.Encode(&ev)); err != nil {
				t.Fatal(err)
			}
		}
	}
	ended := &queue.Job{V: queue.MessageVersion, ID: "lost-end", Kind: "backup", State: queue.StateSucceeded,
		SnapshotID: "0123abcd", Progress: queue.Progress{ChunksDone: 7, ChunksTotal: 7}}
	put(ended, queue.StateQueued, queue.StateRunning)
	running := &queue.Job{V: queue.MessageVersion, ID: "still-running", Kind: "backup", State: queue.StateRunning}
	put(running, queue.StateQueued, queue.StateRunning)

	followCtx, cancel := context.WithTimeout(ctx, testDeadline)
	defer cancel()
	var states []string
	ev, err := queue.Follow(followCtx, js, ended.ID, func(ev *queue.Event) { states = append(states, ev.State) })
	if err != nil {
		t.Fatalf("follow a job whose final event was lost: %v", err)
	}
	if ev.State != queue.StateSucceeded || ev.SnapshotID != ended.SnapshotID || ev.Progress.ChunksDone != 7 {
		t.Errorf("ended with %+v, want the record's end", ev)
	}
	if want := []string{queue.StateQueued, queue.StateRunning, queue.StateSucceeded}; len(states) != len(want) ||
		states[0] != want[0] || states[1] != want[1] || states[2] != want[2] {
		t.Errorf("followed states %v, want %v", states, want)
	}

	// Twice the time a lost end takes to be noticed: the running job's
	// follower is still waiting.
	waitCtx, cancelWait := context.WithTimeout(ctx, 12*time.Second)
	defer cancelWait()
	if ev, err := queue.Follow(waitCtx, js, running.ID, nil); err == nil {
		t.Errorf("a running job's follow ended with %+v", ev)
	}
}
