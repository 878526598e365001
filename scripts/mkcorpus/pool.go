package main

import (
	"cmp"
	"encoding/binary"
	"hash/fnv"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// category is the kind of a file, which decides its share of a corpus.
type category int

const (
	catBinary     category = iota // executables
	catLibrary                    // shared objects, interpreter libraries, data under lib/
	catSource                     // source code and headers
	catDoc                        // documentation and configuration
	catLog                        // logs: real ones, then generated ones
	catCompressed                 // already-compressed files: incompressible
	numCategories
)

var categoryNames = [numCategories]string{"binary", "library", "source", "doc", "log", "compressed"}

func (c category) String() string { return categoryNames[c] }

// compressedExt are extensions of files that zstd cannot shrink further;
// such a file counts as catCompressed wherever it lies.
var compressedExt = map[string]bool{
	".gz": true, ".tgz": true, ".xz": true, ".zst": true, ".bz2": true, ".lz4": true, ".br": true,
	".zip": true, ".jar": true, ".whl": true, ".7z": true, ".deb": true,
	".png": true, ".jpg": true, ".jpeg": true, ".gif": true, ".webp": true, ".woff": true, ".woff2": true,
}

// root is a directory files are drawn from.
type root struct {
	path string
	cat  category
	skip []string // subdirectories of path left out
	only string   // when set, only files with this extension (e.g. the module cache's zips)
}

// candidate is one file that may go into a corpus.
type candidate struct {
	path string // absolute path on this machine
	size int64
	cat  category
	key  uint64 // selection order: a hash of the seed and the path
}

// goEnv returns `go env NAME` or "" when go is not available.
func goEnv(name string) string {
	out, err := exec.Command("go", "env", name).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// defaultRoots lists where real files of each kind live on a Debian
// machine with a Go toolchain: the system's binaries and libraries, the Go
// distribution and module cache as source code, /usr/share and /etc as
// documentation and configuration, /var/log. Missing directories are fine.
func defaultRoots() []root {
	roots := []root{
		{path: "/usr/bin", cat: catBinary},
		{path: "/usr/sbin", cat: catBinary},
		{path: "/usr/libexec", cat: catBinary},
		{path: "/usr/lib", cat: catLibrary},
		{path: "/usr/lib64", cat: catLibrary},
		{path: "/usr/local/lib", cat: catLibrary},
		{path: "/usr/include", cat: catSource},
		{path: "/usr/src", cat: catSource},
		{path: "/usr/share", cat: catDoc},
		{path: "/etc", cat: catDoc},
		{path: "/var/log", cat: catLog},
	}
	if goroot := goEnv("GOROOT"); goroot != "" {
		roots = append(roots,
			root{path: filepath.Join(goroot, "bin"), cat: catBinary},
			root{path: filepath.Join(goroot, "pkg", "tool"), cat: catBinary},
			root{path: filepath.Join(goroot, "src"), cat: catSource},
			root{path: filepath.Join(goroot, "test"), cat: catSource},
			root{path: filepath.Join(goroot, "misc"), cat: catSource},
		)
	}
	if gopath := goEnv("GOPATH"); gopath != "" {
		roots = append(roots, root{path: filepath.Join(filepath.SplitList(gopath)[0], "bin"), cat: catBinary})
	}
	if modcache := goEnv("GOMODCACHE"); modcache != "" {
		// The extracted modules are source; the download cache holds
		// the same modules as zip files, which are incompressible.
		roots = append(roots,
			root{path: modcache, cat: catSource, skip: []string{"cache"}},
			root{path: filepath.Join(modcache, "cache", "download"), cat: catCompressed, only: ".zip"},
		)
	}
	return roots
}

// fileID identifies a file's inode: hard links to one file are one file.
type fileID struct{ dev, ino uint64 }

// scan lists the regular files under roots, each once, classified, with
// its selection key. Of several hard links to one file (git's commands in
// /usr/lib/git-core are one binary) only the first is listed: the image
// stages files as hard links, and mkfs stores a linked file once, so a
// second name would take no space and unbalance the budget. Unreadable
// directories are skipped: the corpus takes what this machine offers.
func scan(roots []root, seed int64) []candidate {
	seen := make(map[string]bool)
	inodes := make(map[fileID]bool)
	var out []candidate
	for _, r := range roots {
		skip := make(map[string]bool, len(r.skip))
		for _, s := range r.skip {
			skip[filepath.Join(r.path, s)] = true
		}
		_ = filepath.WalkDir(r.path, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				if d != nil && d.IsDir() {
					return fs.SkipDir
				}
				return nil
			}
			if d.IsDir() {
				if skip[path] {
					return fs.SkipDir
				}
				return nil
			}
			if !d.Type().IsRegular() || seen[path] {
				return nil
			}
			ext := strings.ToLower(filepath.Ext(path))
			if r.only != "" && ext != r.only {
				return nil
			}
			info, err := d.Info()
			if err != nil {
				return nil
			}
			seen[path] = true
			if st, ok := info.Sys().(*syscall.Stat_t); ok {
				id := fileID{dev: uint64(st.Dev), ino: st.Ino}
				if inodes[id] {
					return nil
				}
				inodes[id] = true
			}
			cat := r.cat
			if compressedExt[ext] {
				cat = catCompressed
			}
			out = append(out, candidate{path: path, size: info.Size(), cat: cat, key: selectionKey(seed, path)})
			return nil
		})
	}
	// Hash order spreads a selection over all directories instead of
	// taking the first ones in name order; ties fall back to the path.
	slices.SortFunc(out, func(a, b candidate) int {
		return cmp.Or(cmp.Compare(a.key, b.key), strings.Compare(a.path, b.path))
	})
	return out
}

// selectionKey orders candidates: the same seed and path give the same key
// on every run and machine.
func selectionKey(seed int64, path string) uint64 {
	h := fnv.New64a()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(seed))
	h.Write(b[:])
	h.Write([]byte(path))
	return h.Sum64()
}

// byCategory splits candidates (kept in selection order) by category.
func byCategory(cands []candidate) [numCategories][]candidate {
	var out [numCategories][]candidate
	for _, c := range cands {
		out[c.cat] = append(out[c.cat], c)
	}
	return out
}

// blocks is the space a file of n bytes takes on a 4 KiB-block file system.
func blocks(n int64) int64 { return (n + 4095) &^ 4095 }

// relPath is where a file of this machine goes inside a corpus: its
// absolute path without the leading slash, so the corpus looks like a root
// file system.
func relPath(path string) string { return strings.TrimLeft(filepath.ToSlash(path), "/") }

// exists reports whether path exists.
func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
