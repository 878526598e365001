package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/manifest"
)

// runLs lists the entries of a files-mode snapshot, or of one of its
// directories.
func runLs(ctx context.Context, e *env, args []string) error {
	var c common
	fs := newFlagSet("ls", &c)
	pos, err := parse(e, fs, args)
	if err != nil {
		return err
	}
	if len(pos) < 1 || len(pos) > 2 {
		return usageError("want SNAPSHOT [PATH], got %d arguments", len(pos))
	}
	repo, err := openRepo(ctx, &c)
	if err != nil {
		return err
	}
	snap, err := repo.FindSnapshot(ctx, pos[0])
	if err != nil {
		return err
	}
	if snap.Mode != manifest.ModeFiles {
		return fmt.Errorf("snapshot %s is a %s backup of %s:%s (%s); it has no files to list", snap.ID, snap.Mode, snap.Host, snap.Path, snap.SourceKind)
	}
	entries := snap.Files
	if len(pos) == 2 {
		sub := manifest.EncodePath(strings.Trim(path.Clean("/"+pos[1]), "/"))
		if sub == "" {
			sub = "."
		}
		if entries, err = snap.Select([]string{sub}); err != nil {
			return err
		}
		entries = under(entries, sub)
	}
	if c.json {
		return json.NewEncoder(e.stdout).Encode(entries)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 1, ' ', 0)
	for _, en := range entries {
		name := manifest.Display(en.Path)
		switch {
		case en.Type == manifest.TypeSymlink:
			name += " -> " + manifest.Display(en.Target)
		case en.LinkTo != "":
			name += " => " + manifest.Display(en.LinkTo)
		}
		if en.Warning != "" {
			name += "  [" + en.Warning + "]"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\n", modeString(en), en.UID, en.GID, en.Size,
			time.Unix(0, en.MTime).Local().Format("2006-01-02 15:04:05"), name)
	}
	return tw.Flush()
}

// under keeps the entries at or below p (Select also returns the
// directories leading to it).
func under(entries []manifest.Entry, p string) []manifest.Entry {
	if p == "." {
		return entries
	}
	var out []manifest.Entry
	for _, e := range entries {
		if e.Path == p || strings.HasPrefix(e.Path, p+"/") {
			out = append(out, e)
		}
	}
	return out
}

// modeString renders an entry's type and mode like ls -l.
func modeString(e manifest.Entry) string {
	m := fs.FileMode(e.Mode & 0o777)
	if e.Mode&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if e.Mode&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if e.Mode&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	switch e.Type {
	case manifest.TypeDir:
		m |= fs.ModeDir
	case manifest.TypeSymlink:
		m |= fs.ModeSymlink
	case manifest.TypeSpecial:
		m |= fs.ModeIrregular
	}
	return m.String()
}
