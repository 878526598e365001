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
	// The keep policy's rules (KeepPolicy): each given one replaces the
	// schedule's, 0 (or "" for KeepWithin) turning it off.
	KeepLast    *int    `json:"keep_last,omitempty"`
	KeepHourly  *int    `json:"keep_hourly,omitempty"`
	KeepDaily   *int    `json:"keep_daily,omitempty"`
	KeepWeekly  *int    `json:"keep_weekly,omitempty"`
	KeepMonthly *int    `json:"keep_monthly,omitempty"`
	KeepYearly  *int    `json:"keep_yearly,omitempty"`
	KeepWithin  *string `json:"keep_within,omitempty"`
}

// Empty reports whether r changes nothing.
func (r *ScheduleSetRequest) Empty() bool {
	return r.Cron == nil && r.Timezone == nil && r.Repo == nil && r.Level == nil && r.ChunkSize == nil && !r.changesKeep()
}

// changesKeep reports whether r changes the keep policy.
func (r *ScheduleSetRequest) changesKeep() bool {
	return r.KeepLast != nil || r.KeepHourly != nil || r.KeepDaily != nil || r.KeepWeekly != nil ||
		r.KeepMonthly != nil || r.KeepYearly != nil || r.KeepWithin != nil
}

// ApplyKeep returns k with the keep rules r gives.
func (r *ScheduleSetRequest) ApplyKeep(k KeepPolicy) KeepPolicy {
	for _, f := range []struct {
		to  *int
		new *int
	}{{&k.KeepLast, r.KeepLast}, {&k.KeepHourly, r.KeepHourly}, {&k.KeepDaily, r.KeepDaily}, {&k.KeepWeekly, r.KeepWeekly},
		{&k.KeepMonthly, r.KeepMonthly}, {&k.KeepYearly, r.KeepYearly}} {
		if f.new != nil {
			*f.to = *f.new
		}
	}
	if r.KeepWithin != nil {
		k.KeepWithin = *r.KeepWithin
	}
	return k
}

func (r *ScheduleSetRequest) version() int { return r.V }
