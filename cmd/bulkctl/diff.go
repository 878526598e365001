package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/config"
	"github.com/bulkbackup/bulkbackup/pkg/manifest"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/snapdiff"
)

func init() {
	commands["diff"] = command{run: runDiff}
	commandHelp["diff"] = `Usage: bulkctl diff SNAPSHOT1 SNAPSHOT2 -r REPO [flags]

Show how SNAPSHOT2 differs from SNAPSHOT1. For two trees, one line per
entry that differs, in walk order, marked as restic diff marks them:
  +  added             -  removed
  M  modified: a file's content, a symlink's target
  U  metadata only: mode, owner, group, modification time, hard link
  T  type changed (a file became a directory, ...)
and a summary. A file whose bytes moved to other chunks (it was read
again) is compared byte by byte from the repository, so a file that was
only touched shows as U. For two volumes, how many chunks differ.
`
}

// diffResult is what `diff --json` prints.
type diffResult struct {
	From    snapshotEntry           `json:"from"`
	To      snapshotEntry           `json:"to"`
	Changes []snapdiff.Change       `json:"changes,omitempty"`
	Summary *snapdiff.Summary       `json:"summary,omitempty"`
	Volume  *snapdiff.VolumeSummary `json:"volume,omitempty"`
}

func runDiff(ctx context.Context, e *env, args []string) error {
	var c common
	fs := newFlagSet("diff", &c)
	pos, err := parse(e, fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usageError("want SNAPSHOT1 SNAPSHOT2, got %d arguments", len(pos))
	}
	repo, _, err := openRepo(ctx, &c, e, needAll)
	if err != nil {
		return err
	}
	old, err := repo.FindSnapshot(ctx, pos[0])
	if err != nil {
		return err
	}
	new, err := repo.FindSnapshot(ctx, pos[1])
	if err != nil {
		return err
	}
	res := diffResult{From: entryOf(old), To: entryOf(new)}
	switch {
	case old.Mode == manifest.ModeFiles && new.Mode == manifest.ModeFiles:
		changes, sum, err := snapdiff.Trees(ctx, old, new, chunkSource(repo))
		if err != nil {
			return err
		}
		res.Changes, res.Summary = changes, &sum
	case old.Mode == manifest.ModeVolume && new.Mode == manifest.ModeVolume:
		vs, err := snapdiff.Volumes(old, new)
		if err != nil {
			return err
		}
		res.Volume = &vs
	default:
		return fmt.Errorf("snapshot %s is a %s backup and %s a %s backup: only two trees or two volumes compare", old.ID, old.Mode, new.ID, new.Mode)
	}
	if c.json {
		return json.NewEncoder(e.stdout).Encode(res)
	}
	printDiff(e, &res)
	return nil
}

// chunkSource reads chunks from repo for the comparisons that need bytes.
func chunkSource(repo *repository.Repository) snapdiff.ChunkSource {
	return func(ctx context.Context, hash string) ([]byte, error) {
		id, err := chunk.ParseID(hash)
		if err != nil {
			return nil, err
		}
		return repo.GetChunk(ctx, id, nil)
	}
}

func printDiff(e *env, res *diffResult) {
	describe := func(s snapshotEntry) string {
		return fmt.Sprintf("%s (%s:%s, %s)", s.ID, s.Host, s.Path, s.Time.Local().Format(time.DateTime))
	}
	fmt.Fprintf(e.stdout, "comparing snapshot %s\n     with snapshot %s\n\n", describe(res.From), describe(res.To))
	if v := res.Volume; v != nil {
		fmt.Fprintf(e.stdout, "volume: %d of %d chunks differ (%s); size %s -> %s\n", v.Changed, v.Chunks,
			config.FormatBytes(v.ChangedBytes), config.FormatBytes(v.OldSize), config.FormatBytes(v.NewSize))
		return
	}
	for _, ch := range res.Changes {
		name := manifest.Display(ch.Path)
		if ch.Type == manifest.TypeDir {
			name += "/"
		}
		var notes []string
		switch {
		case ch.Kind == snapdiff.Type:
			notes = append(notes, ch.OldType+" -> "+ch.Type)
		case len(ch.Fields) > 0:
			notes = append(notes, strings.Join(ch.Fields, ", "))
		}
		if ch.Kind == snapdiff.Modified && ch.Type == manifest.TypeFile && ch.Size != ch.OldSize {
			notes = append(notes, config.FormatBytes(ch.OldSize)+" -> "+config.FormatBytes(ch.Size))
		}
		line := ch.Kind.Letter() + "    " + name
		if len(notes) > 0 {
			line += "  (" + strings.Join(notes, "; ") + ")"
		}
		fmt.Fprintln(e.stdout, line)
	}
	s := res.Summary
	if len(res.Changes) > 0 {
		fmt.Fprintln(e.stdout)
	}
	fmt.Fprintf(e.stdout, "%d added (%s), %d removed (%s), %d modified, %d metadata only, %d type changed\n",
		s.Added, config.FormatBytes(s.AddedBytes), s.Removed, config.FormatBytes(s.RemovedBytes), s.Modified, s.Metadata, s.Type)
}
