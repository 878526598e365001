// Package reader is the reader service: it runs on a host that holds data,
// under that host's name, and does the work that must happen where the data
// is. Each of its jobs has a file of its own:
//
//   - stat.go answers what a source is (size, kind, whether a directory is
//     a mounted filesystem's root and how many files it holds), off the
//     subscription's goroutine, as counting a large tree takes a while.
//   - read.go reads one chunk of a backup (a volume range, or a files-mode
//     pack of file pieces) and decides where it goes: an all-zero chunk is
//     done at once (never stored), and so is a chunk that hashes to the
//     same chunk of the source's previous snapshot when that chunk is
//     stored whole; any other is stored.
//   - send.go stores a chunk: in this process when a compressor of its own
//     has a worker free (Config.Compress), else by holding it for the
//     fleet's compressors and announcing it on the ready stream (a small
//     descriptor; the bytes never enter a stream). How many chunks it
//     holds follows the live compressors, within Config.MaxHeld: that is
//     the flow control that keeps memory bounded whatever the volume's
//     size, and lets added compressors raise the pace at once.
//   - serve.go hands held chunks to the compressors that fetch them: over
//     NATS request/reply, or over HTTP from its data server, which costs
//     less per byte where compressors can reach it. A chunk it no longer
//     holds (it restarted, or another reader of the host announced it) is
//     read again.
//   - scan.go lists a tree for a files-mode backup, in batches.
//   - write.go does the steps of a restore: prepare a volume target, write
//     verified chunks at their offsets (directly, around the page cache,
//     where the file system allows), finish it; or create a tree's entries,
//     write its extents, set metadata, links and directories. volumes.go
//     keeps a restore's volume targets open between its steps.
//   - done.go records work done, or failed for good, on the completion
//     stream, with a code saying why.
//
// A work item is acknowledged once its chunk is stored, announced or
// written: a reader killed at any point loses nothing, as the coordinator
// re-issues what does not complete.
package reader
