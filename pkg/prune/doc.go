// Package prune deletes the chunks no snapshot names, while backups go on
// writing to the same repository, without a lock that stops them. The
// protocol is specified in docs/format.md section 10; this package is the
// prune's side of it (the backups' side is repository.CheckReuse).
//
// A prune cuts the chunk hash space into shards by the first byte and
// runs in phases, each recorded in the repository (repository.PruneState),
// so a prune killed at any moment is resumed by running it again:
//
//  1. Marking: the snapshots are listed once and the list stored. For each
//     shard, a worker (Condemn) reads every listed snapshot's chunks that
//     fall in the shard, lists the shard's stored chunks, and stores the
//     difference, sorted, as the shard's condemned list under a token of
//     its own; the state records which token each shard uses, so a
//     straggling duplicate of a step can never change what is condemned.
//  2. Condemned: the state says so. Backups that start from now on (after
//     Timing.GuardWait, which outlasts every process's view of the
//     prunes) ask the prune to keep any condemned chunk they name. The
//     prune lists the registered backups and waits for each to end: they
//     may have named condemned chunks without asking.
//  3. Sweeping: the snapshots committed since the listing ("late") are
//     stored. For each shard, a worker (Sweep) marks the shard deleting,
//     then deletes each condemned chunk that neither a late snapshot nor a
//     keep record names, in rounds of at most Timing.DeleteWindow, each
//     begun by confirming the phase and listing the keep records afresh,
//     and marks the shard deleted.
//  4. Closing, then done once Timing.DeleteFence has passed, so that no
//     straggling sweep deletes anything after backups stop looking; the
//     prune's lists and markers are then removed.
//
// Memory is bounded per worker by one shard's chunks (the shard count
// grows with the repository), and the process that drives the prune
// (Runner) holds only snapshot IDs and per-shard counts.
package prune
