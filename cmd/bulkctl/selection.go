package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/bulkbackup/bulkbackup/pkg/config"
	"github.com/bulkbackup/bulkbackup/pkg/exclude"
	"github.com/bulkbackup/bulkbackup/pkg/manifest"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
)

// selectionFlags are the flags of backup and schedule add that leave parts
// of a tree out and label the snapshot.
type selectionFlags struct {
	exclude, excludeFiles stringList
	caches, oneFS         bool
	largerThan            config.Size
	tags                  stringList
	host                  string
}

func addSelectionFlags(fs *flag.FlagSet) *selectionFlags {
	f := &selectionFlags{}
	fs.Var(&f.exclude, "exclude", "leave out what matches this pattern, in .gitignore's syntax, relative to the backed-up directory "+
		`("*.o", "/tmp/", "**/cache/", "!keep.o"); repeatable, applied in order, the last match decides`)
	fs.Var(&f.excludeFiles, "exclude-file", "read --exclude patterns from this file, one a line, as a .gitignore file (# comments); repeatable")
	fs.BoolVar(&f.caches, "exclude-caches", false, "leave out the content of directories tagged as caches (a CACHEDIR.TAG file), keeping the directory and its tag")
	fs.Var(&f.largerThan, "exclude-larger-than", "leave out files larger than this size (e.g. 1GiB); 0: none")
	fs.BoolVar(&f.oneFS, "one-file-system", false, "do not cross into other filesystems mounted inside the tree (their mount points are kept, empty)")
	fs.Var(&f.tags, "tag", `label the snapshot with this tag ("a,b" for two); repeatable`)
	fs.StringVar(&f.host, "host", "", "the host recorded in the snapshot (default: the source's host), also the host whose latest snapshot an incremental backup starts from")
	return f
}

// request returns the selection and labels the flags ask for. Exclude
// files are read here, where the command runs: their patterns travel in
// the request.
func (f *selectionFlags) request() (queue.Selection, queue.Labels, error) {
	sel := queue.Selection{ExcludeCaches: f.caches, ExcludeLargerThan: int64(f.largerThan), OneFileSystem: f.oneFS}
	for _, line := range f.exclude {
		p, err := exclude.Compile(line)
		if err != nil {
			return sel, queue.Labels{}, usageError("--exclude: %v", err)
		}
		if p == nil {
			return sel, queue.Labels{}, usageError(`--exclude %q matches nothing (blank, or a comment: write "\#" for a leading #)`, line)
		}
		sel.Exclude = append(sel.Exclude, p.String())
	}
	for _, name := range f.excludeFiles {
		file, err := os.Open(name)
		if err != nil {
			return sel, queue.Labels{}, usageError("--exclude-file: %v", err)
		}
		lines, err := exclude.ReadLines(file)
		file.Close()
		if err != nil {
			return sel, queue.Labels{}, usageError("--exclude-file %s: %v", name, err)
		}
		for i, line := range lines {
			p, err := exclude.Compile(line)
			if err != nil {
				return sel, queue.Labels{}, usageError("--exclude-file %s, line %d: %v", name, i+1, err)
			}
			if p != nil {
				sel.Exclude = append(sel.Exclude, p.String())
			}
		}
	}
	if f.largerThan < 0 {
		return sel, queue.Labels{}, usageError("--exclude-larger-than must not be negative")
	}
	if err := sel.Check(); err != nil {
		return sel, queue.Labels{}, usageError("%v", err)
	}
	labels := queue.Labels{Host: f.host}
	for _, t := range f.tags {
		labels.Tags = append(labels.Tags, manifest.SplitTags(t)...)
	}
	if err := labels.Normalize(); err != nil {
		return sel, labels, usageError("--tag/--host: %v", err)
	}
	return sel, labels, nil
}

// filterFlags pick snapshots by tag, host and path (snapshots, restore
// latest, find).
type filterFlags struct {
	tags, hosts, paths stringList
}

// addFilterFlags adds --tag, --host and, named pathFlag, the source path
// filter (restore's --path selects files, so there it is --source-path).
func addFilterFlags(fs *flag.FlagSet, pathFlag string) *filterFlags {
	f := &filterFlags{}
	fs.Var(&f.tags, "tag", `only snapshots with this tag ("a,b": with both; "": with none); repeatable: any of them`)
	fs.Var(&f.hosts, "host", "only snapshots of this host; repeatable: any of them")
	fs.Var(&f.paths, pathFlag, "only snapshots of this backed-up path; repeatable: any of them")
	return f
}

// filter returns the manifest filter, nil when no flag was given.
func (f *filterFlags) filter() *manifest.Filter {
	mf := &manifest.Filter{Tags: f.tags, Hosts: f.hosts, Paths: f.paths}
	if mf.Empty() {
		return nil
	}
	return mf
}

// describeLabels names a snapshot's tags and recorded host for the
// output: "" when there are none.
func describeLabels(tags []string, host string) string {
	var parts []string
	if len(tags) > 0 {
		parts = append(parts, "tags "+strings.Join(tags, ", "))
	}
	if host != "" {
		parts = append(parts, "host "+host)
	}
	return strings.Join(parts, "; ")
}

// printSelection writes a schedule's selection and labels, if any.
func printSelection(e *env, sel *queue.Selection, labels *queue.Labels) {
	if d := sel.Describe(); d != "" {
		fmt.Fprintf(e.stdout, "leaves out  %s\n", d)
	}
	if d := describeLabels(labels.Tags, labels.Host); d != "" {
		fmt.Fprintf(e.stdout, "labels      %s\n", d)
	}
}
