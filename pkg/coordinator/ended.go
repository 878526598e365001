package coordinator

import "github.com/bulkbackup/bulkbackup/pkg/queue"

// ended tidies the record of a job that has reached a final state: a
// backup that did not succeed committed no snapshot, so it names none (the
// ID it had chosen for one would send whoever reads it looking for a
// snapshot that does not exist), and a job that has ended has no time left
// to run.
func ended(job *queue.Job) {
	if job.Kind == queue.KindBackup && job.State != queue.StateSucceeded {
		job.SnapshotID = ""
	}
	job.Progress.ETASeconds = 0
}
