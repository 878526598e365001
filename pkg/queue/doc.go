// Package queue is bulkbackup's JetStream contract: subject names, stream,
// consumer and key-value definitions, the JSON message types every service
// exchanges, and the consume loop that maps a handler's result onto
// acknowledgements.
//
// Two kinds of traffic are kept apart. Work items, completions, job records
// and events are small and must survive restarts: they live in file-backed
// streams (replicated in a cluster). Raw chunk bytes are large and can always
// be read again from the source: they travel through a memory-backed work
// queue (StreamRaw) whose byte limit, with DiscardNew, is the fleet's
// in-flight bound; a publisher that finds it full waits and retries (flow
// control). The coordinator re-issues a chunk whose completion does not
// arrive in time, so raw data lost with a NATS restart is simply read again.
package queue
