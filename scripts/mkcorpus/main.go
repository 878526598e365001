// Command mkcorpus builds benchmark inputs from the real files of this
// machine (binaries, libraries, the Go toolchain's and module cache's
// source code, documentation, logs), for scripts/bench.sh:
//
//	mkcorpus image -size 2GiB -o vol.img    # an ext4 volume image
//	mkcorpus tree -files 100000 -o DIR      # a file tree
//
// The image is an ext4 file system made by mkfs.ext4 -d, about 25% free
// and about 10% incompressible (the machine's compressed files, such as
// the module cache's zips, topped up with random bytes); what the machine
// cannot supply of the rest is filled with generated logs. It is written
// in full: free blocks are zeros on disk, not holes.
//
// The tree copies files at their original paths below DIR: 60% source
// files, 20% documents and configuration, 15% libraries, 3% compressed
// files, 2% logs and a few large binaries. With -small it is generated
// instead: small log files (0-4 KiB), 100 to a directory, for a tree of
// millions of files that fits on a disk; it has no manifest.
//
// Files are chosen in an order given by a hash of the seed and their path,
// so the same seed on the same machine gives the same selection, spread
// over all directories. Generated content depends only on the seed. Each
// output has a manifest beside it (OUT.manifest: category, size, source).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"

	"github.com/bulkbackup/bulkbackup/pkg/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:])
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case err != nil:
		fmt.Fprintln(os.Stderr, "mkcorpus:", err)
		os.Exit(1)
	}
}

const usage = `usage:
  mkcorpus image -size 2GiB -o VOL.img [-free 0.25] [-incompressible 0.10] [-seed 1]
  mkcorpus tree -files 100000 -o DIR [-seed 1] [-small]`

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, usage)
		return errors.New("no command")
	}
	switch args[0] {
	case "image":
		return runImage(ctx, args[1:])
	case "tree":
		return runTree(ctx, args[1:])
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(os.Stderr, usage)
		return flag.ErrHelp
	default:
		fmt.Fprintln(os.Stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
}

// parse parses a subcommand's flags; the environment does not fill them
// (config.Parse would read BULK_SIZE and such, meant for other programs).
func parse(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard) // main prints the one error line
	pos, err := config.Parse(fs, args, config.Options{Env: func(string) (string, bool) { return "", false }})
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(os.Stderr)
		fs.Usage()
	}
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("unexpected arguments %q", pos)
	}
	return nil
}

func runImage(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("mkcorpus image", flag.ContinueOnError)
	size := config.Size(2 << 30)
	fs.Var(&size, "size", "image `size`, such as 2GiB (a multiple of 4KiB, at least 64MiB)")
	out := fs.String("o", "", "output `path` (required)")
	free := fs.Float64("free", 0.25, "share of the file system left free")
	incompressible := fs.Float64("incompressible", 0.10, "share of the image in incompressible files")
	seed := fs.Int64("seed", 1, "selection and generator seed")
	if err := parse(fs, args); err != nil {
		return err
	}
	switch {
	case *out == "":
		return errors.New("-o path is required")
	case *free < 0 || *free >= 1:
		return fmt.Errorf("-free %g: want a share in [0, 1)", *free)
	case *incompressible < 0 || *incompressible+*free >= 1:
		return fmt.Errorf("-incompressible %g: want a share in [0, 1 - free)", *incompressible)
	}
	return buildImage(ctx, *out, imageOptions{
		size: int64(size), free: *free, incompressible: *incompressible, seed: *seed,
		roots: defaultRoots(), log: os.Stderr,
	})
}

func runTree(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("mkcorpus tree", flag.ContinueOnError)
	files := fs.Int("files", 100000, "number of files")
	out := fs.String("o", "", "output `directory`, which must not exist (required)")
	seed := fs.Int64("seed", 1, "selection and generator seed")
	small := fs.Bool("small", false, "generated small files only (0-4 KiB of logs, 100 to a directory), for trees of millions of files")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("-o directory is required")
	}
	if *small {
		return buildSmallTree(ctx, *out, *files, *seed, os.Stderr)
	}
	return buildTree(ctx, *out, treeOptions{files: *files, seed: *seed, roots: defaultRoots(), log: os.Stderr})
}
