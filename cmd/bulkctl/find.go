package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/exclude"
	"github.com/bulkbackup/bulkbackup/pkg/manifest"
)

func init() {
	commands["find"] = command{run: runFind}
	commandHelp["find"] = `Usage: bulkctl find PATTERN... -r REPO [flags]

List the entries of every files-mode snapshot that match a PATTERN,
newest snapshot first. Patterns are written as --exclude's (.gitignore
syntax): one without a "/" matches a name at any depth ("*.conf",
"nginx"); one with a "/" is anchored at the backed-up directory
("etc/nginx/*.conf") or at the host's root ("/srv/etc/nginx/*.conf" in a
backup of /srv); a trailing "/" matches directories only; "**" crosses
directories. --tag, --host and --path search only the snapshots that
match them.
`
}

// findResult is one snapshot's matches in `find --json`.
type findResult struct {
	Snapshot snapshotEntry    `json:"snapshot"`
	Matches  []manifest.Entry `json:"matches"`
}

func runFind(ctx context.Context, e *env, args []string) error {
	var c common
	fs := newFlagSet("find", &c)
	ff := addFilterFlags(fs, "path")
	pos, err := parse(e, fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usageError("want at least one PATTERN")
	}
	var patterns []*exclude.Pattern
	for _, arg := range pos {
		p, err := exclude.Compile(arg)
		switch {
		case err != nil:
			return usageError("%v", err)
		case p == nil:
			return usageError(`pattern %q matches nothing (blank, or a comment: write "\#" for a leading #)`, arg)
		case p.Negated():
			return usageError(`pattern %q: "!" excludes, which find does not; name what to find`, arg)
		}
		patterns = append(patterns, p)
	}
	repo, _, err := openRepo(ctx, &c, e, needMeta)
	if err != nil {
		return err
	}
	headers, err := repo.SnapshotHeadersMatching(ctx, ff.filter())
	if err != nil {
		return err
	}
	results := []findResult{}
	searched, volumes, matches := 0, 0, 0
	for i := len(headers) - 1; i >= 0; i-- {
		h := headers[i]
		if h.Mode != manifest.ModeFiles {
			volumes++
			continue
		}
		snap, err := repo.LoadSnapshot(ctx, h.ID)
		if err != nil {
			return err
		}
		searched++
		if found := findIn(snap, patterns); len(found) > 0 {
			results = append(results, findResult{Snapshot: entryOf(snap), Matches: found})
			matches += len(found)
		}
	}
	if c.json {
		return json.NewEncoder(e.stdout).Encode(results)
	}
	names := newOwnerNames()
	for _, r := range results {
		fmt.Fprintf(e.stdout, "snapshot %s of %s:%s at %s: %s\n", r.Snapshot.ID, r.Snapshot.Host, r.Snapshot.Path,
			r.Snapshot.Time.Local().Format(time.DateTime), matchCount(len(r.Matches)))
		if err := listLong(e.stdout, r.Matches, names); err != nil {
			return err
		}
		fmt.Fprintln(e.stdout)
	}
	note := ""
	if volumes > 0 {
		note = fmt.Sprintf("; %s skipped (no files to search)", plural(volumes, "volume snapshot"))
	}
	fmt.Fprintf(e.stdout, "%s in %s of %d searched%s\n", matchCount(matches), plural(len(results), "snapshot"), searched, note)
	return nil
}

// matchCount is "1 match", "2 matches".
func matchCount(n int) string {
	if n == 1 {
		return "1 match"
	}
	return fmt.Sprintf("%d matches", n)
}

// findIn returns the entries of snap that match any pattern, by their path
// relative to the backed-up directory or on the host.
func findIn(snap *manifest.Snapshot, patterns []*exclude.Pattern) []manifest.Entry {
	hostRoot := strings.TrimPrefix(path.Clean("/"+snap.Path), "/")
	var found []manifest.Entry
	for _, e := range snap.Files {
		isDir := e.Type == manifest.TypeDir
		rel := ""
		if e.Path != "." {
			rel = manifest.OSPath(e.Path)
		}
		onHost := strings.TrimPrefix(path.Join(hostRoot, rel), "/")
		for _, p := range patterns {
			if rel != "" && p.Match(rel, isDir) || onHost != "" && onHost != "." && p.Match(onHost, isDir) {
				found = append(found, e)
				break
			}
		}
	}
	return found
}
