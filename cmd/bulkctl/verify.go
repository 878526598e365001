package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/config"
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
	Seconds       float64  `json:"seconds"`
}

func runVerify(ctx context.Context, e *env, args []string) error {
	var c common
	fs := newFlagSet("verify", &c)
	compare := fs.String("compare", "", "also compare the snapshot byte for byte with this volume")
	workers := fs.Int("workers", 0, "chunks checked at once (default one per CPU)")
	pos, err := parse(e, fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError("want one SNAPSHOT, got %d arguments", len(pos))
	}
	repo, err := openRepo(ctx, &c)
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
		Bytes: rep.Bytes, ComparedBytes: rep.ComparedBytes, Damaged: rep.Damaged, Seconds: time.Since(start).Seconds(),
	}
	if verr != nil {
		for _, err := range unjoin(verr) {
			res.Errors = append(res.Errors, err.Error())
		}
	}
	if c.json {
		if err := json.NewEncoder(e.stdout).Encode(res); err != nil {
			return err
		}
	} else {
		for _, msg := range res.Errors {
			fmt.Fprintln(e.stdout, "DAMAGED", msg)
		}
		fmt.Fprintf(e.stdout, "snapshot %s: %s, %s read back, %s", snap.ID, plural(res.Chunks, "chunk"), plural(res.StoredChunks, "stored chunk"), config.FormatBytes(res.Bytes))
		if *compare != "" {
			fmt.Fprintf(e.stdout, ", %s compared with %s", config.FormatBytes(res.ComparedBytes), *compare)
		}
		fmt.Fprintf(e.stdout, " in %.2fs\n", res.Seconds)
	}
	if verr != nil {
		return fmt.Errorf("snapshot %s: %s damaged or differing", snap.ID, plural(len(rep.Damaged), "chunk"))
	}
	if !c.json {
		fmt.Fprintln(e.stdout, "OK")
	}
	return nil
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
