// Package retention decides which snapshots to keep and which to forget,
// under a policy in restic's vocabulary and with restic's semantics
// (restic's manual, "Removing snapshots according to a policy"). It does
// no I/O and knows nothing of repositories: callers pass snapshots in as
// plain values and the time as an argument, so bulkctl forget, the
// coordinator and schedules can all use it, and tests need no clock.
//
// Apply first splits the snapshots into groups, by host and path unless
// told otherwise, and applies the policy to each group alone. Within a
// group it walks the snapshots newest first (equal times in ID order) and
// keeps a snapshot if any rule keeps it. A count rule (Last, Hourly, Daily,
// Weekly, Monthly, Yearly) cuts time into buckets: clock hours, calendar
// days, ISO weeks from Monday, months, years, read in each snapshot's own
// time zone, and every snapshot a bucket of its own for Last. It keeps the
// newest snapshot of each bucket it meets until it has kept as many as its
// count, so "Daily: 7" keeps the newest snapshot of each of the newest
// seven days that have one, however far apart; Unlimited (-1) never stops.
// While a count rule has buckets left it also keeps the group's oldest
// snapshot, reasoned "oldest", so that a young history is not cut shorter
// than the policy intends. Within keeps every snapshot newer than the
// group's newest snapshot less the period: it measures from the newest
// snapshot, not from now, so a source that stopped backing up keeps its
// last snapshots for good. The WithinDaily-style rules keep the newest
// snapshot of every bucket in that period. Snapshots in the future (after
// now) do not count as the newest, so a wrong clock cannot push the others
// out of a period. KeepTags keeps every snapshot with the given tags.
// A policy that sets nothing is refused (ErrEmptyPolicy), and so is one
// that would remove every snapshot of a group (ErrRemovesAll). Each kept
// snapshot carries the reasons it was kept, for forget --dry-run.
package retention
