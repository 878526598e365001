package queue

// SubjectAPIScheduleSet takes a ScheduleSetRequest and answers the
// Schedule as changed (part of the micro service "bulkbackup"). A
// malformed request, or values that would not be accepted by add, are
// answered with error code 400, an unknown name with 404.
const SubjectAPIScheduleSet = "bulk.api.schedule.set"

// ScheduleSetRequest changes a schedule in place: the fields given replace
// the schedule's, the others stay. The schedule keeps its name, source,
// creation time, pause state and history (its last fired and skipped
// windows, and the jobs they started). A change of Cron or Timezone takes
// effect from the time of the change: windows of the new timing that
// passed before it never fire (as for a schedule just added). To back up
// another source, add another schedule.
type ScheduleSetRequest struct {
	V         int     `json:"v"`
	Name      string  `json:"name"`
	Cron      *string `json:"cron,omitempty"`
	Timezone  *string `json:"timezone,omitempty"`
	Repo      *string `json:"repo,omitempty"`
	Level     *string `json:"level,omitempty"`
	ChunkSize *int64  `json:"chunk_size,omitempty"`
	KeepLast  *int    `json:"keep_last,omitempty"`
}

func (r *ScheduleSetRequest) version() int { return r.V }
