// Package queue is bulkbackup's JetStream contract: subject names, stream,
// consumer and key-value definitions, the JSON message types every service
// exchanges, and the consume loop that maps a handler's result onto
// acknowledgements.
//
// Raw chunk bytes never enter a stream. Work items, completions, job records,
// events and the descriptors of chunks readers hold (ChunkReady) are small
// and must survive restarts: they live in file-backed streams (replicated in
// a cluster). The bytes stay in the reader that read them until a compressor
// fetches them, from the reader's data server or by request/reply
// (FetchRequest); the coordinator re-issues a chunk whose completion does
// not arrive in time, so a chunk lost with its reader is simply read again.
//
// Clients (bulkctl, CI, the dashboard) and the coordinator speak messages of
// MessageVersion; the fleet's services speak among themselves messages of
// WorkVersion, one type per operation (a Mux routes them).
package queue
