package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/user"
	"strconv"
	"strings"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/manifest"
)

// runLs lists the entries of a files-mode snapshot, or of one of its
// directories, like ls -l.
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
	repo, _, err := openRepo(ctx, &c, e, needMeta)
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
		sub := manifest.TreePath(snap.Path, pos[1])
		if entries, err = snap.Select([]string{sub}); err != nil {
			return err
		}
		entries = under(entries, sub)
	}
	if c.json {
		return json.NewEncoder(e.stdout).Encode(entries)
	}
	return listLong(e.stdout, entries, newOwnerNames())
}

// listLong writes entries as ls -l does, under a header: type and mode,
// owner, group, size, modification time, and the path (with "-> TARGET"
// for a symlink, the file it is a hard link of, and any warning).
func listLong(w io.Writer, entries []manifest.Entry, names *ownerNames) error {
	type row struct{ mode, owner, group, size, mtime, name string }
	rows := []row{{"MODE", "OWNER", "GROUP", "SIZE", "MODIFIED", "NAME"}}
	for _, en := range entries {
		name := manifest.Display(en.Path)
		size := en.Size
		switch {
		case en.Type == manifest.TypeSymlink:
			target := manifest.Display(en.Target)
			name += " -> " + target
			size = int64(len(manifest.OSTarget(en.Target))) // as ls: the target's length
		case en.LinkTo != "":
			name += " (hard link of " + manifest.Display(en.LinkTo) + ")"
		}
		if en.Warning != "" {
			name += "  [" + en.Warning + "]"
		}
		rows = append(rows, row{modeString(en), names.user(en.UID), names.group(en.GID), strconv.FormatInt(size, 10),
			time.Unix(0, en.MTime).Local().Format("2006-01-02 15:04:05"), name})
	}
	var wOwner, wGroup, wSize int
	for _, r := range rows {
		wOwner, wGroup, wSize = max(wOwner, len(r.owner)), max(wGroup, len(r.group)), max(wSize, len(r.size))
	}
	var b strings.Builder
	for _, r := range rows {
		b.Reset()
		// The size is right-aligned, as ls aligns numbers.
		fmt.Fprintf(&b, "%-10s  %-*s  %-*s  %*s  %-19s  %s", r.mode, wOwner, r.owner, wGroup, r.group, wSize, r.size, r.mtime, r.name)
		if _, err := fmt.Fprintln(w, b.String()); err != nil {
			return err
		}
	}
	return nil
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

// modeString renders an entry's type and mode as ls -l does: a type
// character (- d l p s c b, ? for a special file of unknown kind), then
// rwx for owner, group and others, with s/S for setuid and setgid and
// t/T for the sticky bit (lowercase when the execute bit is also set).
func modeString(e manifest.Entry) string {
	b := []byte("?rwxrwxrwx")
	switch e.Type {
	case manifest.TypeFile:
		b[0] = '-'
	case manifest.TypeDir:
		b[0] = 'd'
	case manifest.TypeSymlink:
		b[0] = 'l'
	case manifest.TypeSpecial:
		switch e.Special {
		case manifest.SpecialFIFO:
			b[0] = 'p'
		case manifest.SpecialSocket:
			b[0] = 's'
		case manifest.SpecialChar:
			b[0] = 'c'
		case manifest.SpecialBlock:
			b[0] = 'b'
		}
	}
	for i := range 9 {
		if e.Mode&(1<<(8-i)) == 0 {
			b[i+1] = '-'
		}
	}
	special := func(bit uint32, at int, c byte) {
		if e.Mode&bit == 0 {
			return
		}
		if b[at] == '-' {
			c -= 'a' - 'A' // set without execute: S or T
		}
		b[at] = c
	}
	special(0o4000, 3, 's')
	special(0o2000, 6, 's')
	special(0o1000, 9, 't')
	return string(b)
}

// ownerNames turns user and group IDs into names, as they resolve on this
// host (the snapshot records numbers: on another host they may name other
// users), or the numbers where they do not.
type ownerNames struct {
	users, groups map[int]string
	lookupUser    func(id string) (string, error)
	lookupGroup   func(id string) (string, error)
}

func newOwnerNames() *ownerNames {
	return &ownerNames{
		users: make(map[int]string), groups: make(map[int]string),
		lookupUser: func(id string) (string, error) {
			u, err := user.LookupId(id)
			if err != nil {
				return "", err
			}
			return u.Username, nil
		},
		lookupGroup: func(id string) (string, error) {
			g, err := user.LookupGroupId(id)
			if err != nil {
				return "", err
			}
			return g.Name, nil
		},
	}
}

func (n *ownerNames) user(id int) string  { return n.name(n.users, n.lookupUser, id) }
func (n *ownerNames) group(id int) string { return n.name(n.groups, n.lookupGroup, id) }

func (n *ownerNames) name(cache map[int]string, lookup func(string) (string, error), id int) string {
	if name, ok := cache[id]; ok {
		return name
	}
	name := strconv.Itoa(id)
	if found, err := lookup(name); err == nil && found != "" {
		name = found
	}
	cache[id] = name
	return name
}
