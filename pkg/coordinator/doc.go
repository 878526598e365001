// Package coordinator is the control plane: it takes job requests from
// StreamRequests, plans them into work items, tracks their completions and
// commits the result.
//
// A backup asks the reader of the source's host to stat the source, cuts it
// into chunks (layout.Volume) and publishes one read item per chunk, keeping at
// most Window items outstanding. Completions arrive on the job's done subject
// from readers (zero chunks) and compressors (stored chunks); duplicates are
// counted once. An item whose completion has not arrived after ChunkTimeout
// is published again (its raw data may have been lost with a NATS restart),
// up to MaxAttempts. When every chunk is done the manifest is written: the
// snapshot exists from that moment, whole.
//
// A restore runs three phases per target (prepare, chunks, finish) on the
// target host's reader, with the same windowing and re-issue.
//
// All state that must survive a restart is in JetStream: the job record in
// BucketJobs and the completions in StreamDone. A coordinator that starts
// resumes every unfinished job: it replays the job's completions and
// publishes only the work still missing, under a new epoch so message
// deduplication does not swallow it.
package coordinator
