package coordinator

import (
	"context"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/queue"
)

// The raw queue is a memory stream with one replica (its bytes can always be
// read again, so they are not replicated). In a cluster it lives on one
// node: when that node dies, the stream is offline — its info requests and
// publishes go unanswered — and JetStream does not move it. Readers would
// wait for it forever. watchRaw notices and recreates the stream on a node
// that is up; the chunks it held are lost and re-issued by their jobs after
// ChunkTimeout.
const (
	// rawCheckInterval is how often the raw stream is checked.
	rawCheckInterval = time.Second
	// rawCheckTimeout bounds one check; the stream's node answers at once
	// when it is up.
	rawCheckTimeout = 2 * time.Second
	// rawLostChecks is how many checks in a row must find the raw stream
	// unreachable, while JetStream itself answers, before it is recreated:
	// about 3 to 9 seconds after its node went down.
	rawLostChecks = 3
)

// watchRaw checks the raw stream until ctx is cancelled and recreates it
// when it stays offline.
func (c *Coordinator) watchRaw(ctx context.Context) {
	ticker := time.NewTicker(rawCheckInterval)
	defer ticker.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		err := c.checkRaw(ctx)
		if err == nil || ctx.Err() != nil {
			failures = 0
			continue
		}
		if _, jsErr := c.js.AccountInfo(ctx); jsErr != nil {
			failures = 0 // JetStream as a whole is away: nothing to recreate elsewhere
			continue
		}
		failures++
		c.logger.WarnContext(ctx, "raw stream unreachable", "stream", queue.StreamRaw, "checks", failures, "err", err)
		if failures < rawLostChecks {
			continue
		}
		failures = 0
		// The delete is answered by the stream's node, which is down: it
		// takes effect without a reply, so its error says nothing.
		delCtx, cancel := context.WithTimeout(ctx, rawCheckTimeout)
		_ = c.js.DeleteStream(delCtx, queue.StreamRaw)
		cancel()
		if err := queue.Setup(ctx, c.js, c.cfg.Streams); err != nil {
			c.logger.ErrorContext(ctx, "recreate raw stream", "stream", queue.StreamRaw, "err", err)
			continue
		}
		c.logger.WarnContext(ctx, "raw stream recreated; the chunks it held are re-issued after the chunk timeout",
			"stream", queue.StreamRaw, "chunk_timeout", c.cfg.ChunkTimeout)
	}
}

// checkRaw asks the raw stream's node for the stream's info.
func (c *Coordinator) checkRaw(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, rawCheckTimeout)
	defer cancel()
	_, err := c.js.Stream(ctx, queue.StreamRaw) // fetches the stream's info
	return err
}
