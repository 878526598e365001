package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/config"
	"github.com/bulkbackup/bulkbackup/pkg/manifest"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/store"
	"github.com/bulkbackup/bulkbackup/pkg/verify"
)

// verifyResult is what `verify --json` prints.
type verifyResult struct {
	SnapshotID    string   `json:"snapshot_id"`
	OK            bool     `json:"ok"`
	Chunks        int      `json:"chunks"`
	StoredChunks  int      `json:"stored_chunks"`
	Bytes         int64    `json:"bytes"`
	ComparedBytes int64    `json:"compared_bytes"`
	Damaged       []int    `json:"damaged_chunks"`
	Errors        []string `json:"errors,omitempty"`
	// DamagedFiles are the files of a files-mode snapshot whose content
	// lies in a damaged chunk (paths in manifest form, as ls --json).
	DamagedFiles []string `json:"damaged_files,omitempty"`
	// Differences are how a compared tree differs from the snapshot.
	Differences []treeDifference `json:"differences,omitempty"`
	Seconds     float64          `json:"seconds"`
}

// treeDifference is one difference of `verify --compare DIR --json`.
type treeDifference struct {
	Path       string `json:"path"` // manifest form, as ls --json
	Difference string `json:"difference"`
}

func runVerify(ctx context.Context, e *env, args []string) error {
	var c common
	fs := newFlagSet("verify", &c)
	compare := fs.String("compare", "", "also compare the snapshot with its source: a volume byte for byte, a directory entry by entry")
	workers := fs.Int("workers", 0, "chunks checked at once (default one per CPU)")
	pos, err := parse(e, fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError("want one SNAPSHOT, got %d arguments", len(pos))
	}
	repo, _, err := openRepo(ctx, &c, e, needAll)
	if err != nil {
		return err
	}
	snap, err := repo.FindSnapshot(ctx, pos[0])
	if err != nil {
		return err
	}
	start := time.Now()
	rep, verr := verify.Snapshot(ctx, repo, snap, verify.Options{Compare: *compare, Workers: *workers})
	if rep == nil {
		return verr
	}
	res := verifyResult{
		SnapshotID: snap.ID, OK: verr == nil, Chunks: rep.Chunks, StoredChunks: rep.StoredChunks,
		Bytes: rep.Bytes, ComparedBytes: rep.ComparedBytes, Damaged: rep.Damaged, DamagedFiles: rep.DamagedFiles,
		Seconds: time.Since(start).Seconds(),
	}
	var findings []*verify.Finding
	for _, err := range unjoin(verr) {
		var f *verify.Finding
		if errors.As(err, &f) {
			findings = append(findings, f)
			res.Errors = append(res.Errors, f.Error())
		} else if verr != nil && !errors.As(err, new(*verify.Difference)) {
			res.Errors = append(res.Errors, err.Error())
		}
	}
	for _, d := range rep.Differences {
		res.Differences = append(res.Differences, treeDifference{Path: d.Path, Difference: d.What})
	}
	recordDamage(ctx, e, repo, findings)
	if c.json {
		if err := json.NewEncoder(e.stdout).Encode(res); err != nil {
			return err
		}
	} else {
		for _, f := range findings {
			fmt.Fprintln(e.stdout, "DAMAGED", f.Error())
			for _, p := range f.Files {
				fmt.Fprintln(e.stdout, "       ", manifest.Display(p))
			}
		}
		for _, d := range rep.Differences {
			fmt.Fprintln(e.stdout, "DIFFERS", d.Error())
		}
		fmt.Fprintf(e.stdout, "snapshot %s: %s, %s read back, %s", snap.ID, plural(res.Chunks, "chunk"), plural(res.StoredChunks, "stored chunk"), config.FormatBytes(res.Bytes))
		if *compare != "" {
			fmt.Fprintf(e.stdout, ", %s compared with %s", config.FormatBytes(res.ComparedBytes), *compare)
		}
		fmt.Fprintf(e.stdout, " in %.2fs\n", res.Seconds)
	}
	if verr != nil {
		return fmt.Errorf("snapshot %s: %s", snap.ID, damageSummary(snap, rep, *compare))
	}
	if !c.json {
		fmt.Fprintln(e.stdout, "OK")
	}
	return nil
}

// recordDamage records the chunks verify found missing or damaged in the
// repository's damage registry, so the next backup that produces them
// stores them again rather than deduplicating against them. A chunk that
// only differs from the source (--compare) is not damaged. What cannot be
// recorded is said on stderr: verify's own result stands.
func recordDamage(ctx context.Context, e *env, repo *repository.Repository, findings []*verify.Finding) {
	for _, f := range findings {
		state := "damaged"
		switch {
		case errors.Is(f.Err, store.ErrNotFound):
			state = "missing"
		case !errors.Is(f.Err, chunk.ErrCorrupt):
			continue
		}
		if _, err := chunk.ParseID(f.Hash); err != nil {
			continue
		}
		d := repository.Damage{Chunk: f.Hash, State: state, Problem: f.Err.Error(), FoundBy: repository.FoundByVerify}
		if err := repo.RecordDamage(ctx, d); err != nil {
			fmt.Fprintf(e.stderr, "bulkctl: chunk %s not recorded as %s: %v\n", f.Hash, state, err)
		}
	}
}

// damageSummary says in one phrase what verify found wrong.
func damageSummary(snap *manifest.Snapshot, rep *verify.Report, compare string) string {
	var what []string
	switch {
	case len(rep.Damaged) == 0:
	case snap.Mode == manifest.ModeFiles:
		what = append(what, fmt.Sprintf("%s holding %s", plural(len(rep.Damaged), "damaged chunk"), plural(len(rep.DamagedFiles), "file")))
	default:
		what = append(what, plural(len(rep.Damaged), "damaged or differing chunk"))
	}
	if len(rep.Differences) > 0 {
		what = append(what, fmt.Sprintf("%s from %s", plural(len(rep.Differences), "difference"), compare))
	}
	if len(what) == 0 {
		return "not verified"
	}
	return strings.Join(what, "; ")
}

func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
