package reader

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/bulkbackup/bulkbackup/pkg/queue"
	"github.com/bulkbackup/bulkbackup/pkg/source"
)

// scanOptions turns a scan's selection into the walk's options. A
// directory repository is left out of the tree wherever the walk meets it
// (on this host, that is: a repository elsewhere is not in the tree).
func scanOptions(item *queue.ScanTree) (source.ScanOptions, error) {
	m, err := item.Selection.Matcher()
	if err != nil {
		return source.ScanOptions{}, fmt.Errorf("scan %s: %w", item.Path, err)
	}
	opts := source.ScanOptions{
		Exclude: m, ExcludeCaches: item.ExcludeCaches, ExcludeLargerThan: item.ExcludeLargerThan, OneFileSystem: item.OneFileSystem,
	}
	if dir, ok := repoDir(item.Repo); ok {
		opts.SkipDirs = []string{dir}
	}
	return opts, nil
}

// repoDir returns the directory a repository string names, if it names
// one: a path or file://PATH (storeurl's forms), absolute.
func repoDir(repo string) (string, bool) {
	repo = strings.TrimPrefix(repo, "file://")
	if repo == "" || strings.Contains(repo, "://") || !filepath.IsAbs(repo) {
		return "", false
	}
	return repo, true
}
