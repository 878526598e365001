package coordinator

import (
	"cmp"
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bulkbackup/bulkbackup/pkg/queue"
)

// apiScheduleSet changes a schedule in place (queue.ScheduleSetRequest):
// the values given are checked as an add's would be, the others and the
// schedule's history stay. A new timing takes effect from now.
func (c *Coordinator) apiScheduleSet(ctx context.Context, data []byte) (any, error) {
	var req queue.ScheduleSetRequest
	if err := queue.Decode(data, &req); err != nil {
		return nil, err
	}
	if err := queue.CheckScheduleName(req.Name); err != nil {
		return nil, badRequest(err)
	}
	if req.Empty() {
		return nil, badRequest(errors.New("nothing to change: give cron, timezone, repo, level, chunk_size or a keep rule (keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly, keep_within)"))
	}
	kv, err := c.scheduleKV(ctx)
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		s, entry, err := loadSchedule(ctx, kv, req.Name)
		if err != nil {
			return nil, err
		}
		add := &queue.ScheduleAddRequest{
			V: queue.MessageVersion, Name: s.Name, Kind: s.Kind, Source: s.Source, Repo: s.Repo, Cron: s.Cron, Timezone: s.Timezone,
			Level: s.Level, ChunkSize: s.ChunkSize, KeepPolicy: s.KeepPolicy, Selection: s.Selection, Labels: s.Labels,
		}
		add.Cron = *cmp.Or(req.Cron, &add.Cron)
		add.Timezone = *cmp.Or(req.Timezone, &add.Timezone)
		add.Repo = *cmp.Or(req.Repo, &add.Repo)
		add.Level = *cmp.Or(req.Level, &add.Level)
		add.ChunkSize = *cmp.Or(req.ChunkSize, &add.ChunkSize)
		add.KeepPolicy = req.ApplyKeep(add.KeepPolicy)
		now := c.cfg.Clock()
		checked, err := newSchedule(add, now)
		if err != nil {
			return nil, badRequest(err)
		}
		retimed := checked.Cron != s.Cron || checked.Timezone != s.Timezone
		s.Repo, s.Cron, s.Timezone = checked.Repo, checked.Cron, checked.Timezone
		s.Level, s.ChunkSize, s.KeepPolicy = checked.Level, checked.ChunkSize, checked.KeepPolicy
		if retimed {
			s.Retimed = now.UTC()
		}
		_, err = kv.Update(ctx, s.Name, queue.Encode(s), entry.Revision())
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) && attempt < 10 {
			continue // the scheduler recorded a window meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("update schedule %s: %w", s.Name, err)
		}
		c.logger.InfoContext(ctx, "schedule changed", "schedule", s.Name, "cron", s.Cron, "timezone", s.Timezone,
			"repo", s.Repo, "level", s.Level, "chunk_size", s.ChunkSize, "keep", s.KeepPolicy)
		return c.withNext(s), nil
	}
}
