package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/config"
	"github.com/bulkbackup/bulkbackup/pkg/manifest"
)

// snapshotEntry is one line of `snapshots --json`.
type snapshotEntry struct {
	ID          string    `json:"id"`
	Time        time.Time `json:"time"`
	Host        string    `json:"host"`
	Path        string    `json:"path"`
	Mode        string    `json:"mode"`
	Size        int64     `json:"size"`
	StoredBytes int64     `json:"stored_bytes"`
	Chunks      int       `json:"chunks"`
	ChunkSize   int64     `json:"chunk_size"`
	Tags        []string  `json:"tags,omitempty"`
}

func runSnapshots(ctx context.Context, e *env, args []string) error {
	var c common
	fs := newFlagSet("snapshots", &c)
	ff := addFilterFlags(fs, "path")
	pos, err := parse(e, fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageError("unexpected arguments %q", pos)
	}
	repo, _, err := openRepo(ctx, &c, e, needMeta)
	if err != nil {
		return err
	}
	snaps, err := repo.SnapshotHeadersMatching(ctx, ff.filter())
	if err != nil {
		return err
	}
	entries := make([]snapshotEntry, 0, len(snaps))
	for _, s := range snaps {
		entries = append(entries, entryOf(s))
	}
	if c.json {
		return json.NewEncoder(e.stdout).Encode(entries)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTIME\tSOURCE\tSIZE\tSTORED\tCHUNKS\tTAGS")
	for _, s := range entries {
		fmt.Fprintf(tw, "%s\t%s\t%s:%s\t%s\t%s\t%d\t%s\n", s.ID, s.Time.Local().Format("2006-01-02 15:04:05"),
			s.Host, s.Path, config.FormatBytes(s.Size), config.FormatBytes(s.StoredBytes), s.Chunks, strings.Join(s.Tags, ","))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, plural(len(entries), "snapshot"))
	return nil
}

func entryOf(s *manifest.Snapshot) snapshotEntry {
	return snapshotEntry{
		ID: s.ID, Time: s.Time, Host: s.Host, Path: s.Path, Mode: s.Mode, Size: s.Size,
		StoredBytes: s.Stats.StoredBytes, Chunks: s.Stats.Chunks, ChunkSize: s.ChunkSize, Tags: s.Tags,
	}
}
