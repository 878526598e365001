package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/bulkbackup/bulkbackup/pkg/config"
)

// commandHelp is what `bulkctl help COMMAND` (or `bulkctl COMMAND --help`)
// prints above the command's flags, keyed by the command as its flag set
// names it ("backup", "schedule add").
var commandHelp = map[string]string{
	"init": `Usage: bulkctl init -r REPO [flags]

Create the repository REPO: encrypted, its keys wrapped by a password
(from a file named by BULK_PASSWORD_FILE, or BULK_PASSWORD, or typed twice
on a terminal) and/or to age recipients (--recipient); unencrypted only
with --plaintext. It prints the keys' fingerprint: compare it with what
key write-key prints on the hosts that get write keys.
`,
	"key list":      "Usage: bulkctl key list -r REPO [flags]\n\nList the repository's key objects: ID, kind, creation, label, recipients.\n",
	"key add":       "Usage: bulkctl key add -r REPO [flags]\n\nAdd a password (BULK_NEW_PASSWORD_FILE) or --recipient that opens the repository.\n",
	"key remove":    "Usage: bulkctl key remove KEY_ID -r REPO [flags]\n\nRemove a key object: never the last, nor the one that opened the repository.\n",
	"key passwd":    "Usage: bulkctl key passwd -r REPO [flags]\n\nReplace the password that opened the repository by BULK_NEW_PASSWORD_FILE's.\n",
	"key identity":  "Usage: bulkctl key identity -o FILE [flags]\n\nCreate an age identity file (mode 0600) and print its recipient.\n",
	"key write-key": "Usage: bulkctl key write-key -r REPO --for coordinator|worker -o FILE [flags]\n\nWrite the write key file the fleet's services load (BULK_WRITE_KEY_FILE).\n",
	"backup": `Usage: bulkctl backup SOURCE -r REPO [flags]

Back up SOURCE, a volume (an image file or a block device) or a directory,
into the repository REPO (bulkctl init creates one), and print the
snapshot's ID and figures. In auto mode a directory is backed up file by file, unless it
holds more than --files-threshold files and is a mounted filesystem's root
whose device can be read. With --nats, SOURCE is HOST:PATH.

A directory's --exclude patterns are written as in a .gitignore file and
matched against paths relative to SOURCE: "*.o" anywhere, "/tmp" only at
the top, "cache/" directories only, "a/**/b" across directories, "!x"
includes again; the last pattern that matches decides, and nothing under
an excluded directory comes back. What is left out is never opened. A
repository inside SOURCE is always left out. --tag labels the snapshot
(snapshots, restore latest and find select by it).
`,
	"restore": `Usage: bulkctl restore SNAPSHOT TARGET... -r REPO [flags]

Restore SNAPSHOT (an ID, a unique ID prefix, or "latest"): a volume to the
file or block device TARGET (several targets get one copy each), a
directory tree under the directory TARGET. --path restores only that file
or directory of a tree: relative to the backed-up directory ("etc/nginx"),
or as it was on the host ("/srv/etc/nginx" for a backup of /srv). With
--nats, each TARGET is HOST:PATH. --tag, --host and --source-path make
"latest" the newest snapshot that matches them.
`,
	"verify": `Usage: bulkctl verify SNAPSHOT -r REPO [flags]

Read back every chunk of SNAPSHOT and check it against its hash; a damaged
chunk is named, and for a tree so are the files it holds. --compare also
compares the snapshot with its source: a volume byte for byte, a directory
tree entry by entry (type, mode, size, times, symlink targets, hard links,
owners when run as root, and content), naming each difference by path.
`,
	"snapshots": `Usage: bulkctl snapshots -r REPO [flags]

List the snapshots in the repository, oldest first; --tag, --host and
--path list only those that match (each repeatable: any of them; a tag
"a,b" means both).
`,
	"ls": `Usage: bulkctl ls SNAPSHOT [PATH] -r REPO [flags]

List the entries of a files-mode snapshot like ls -l, or those at and
under PATH: relative to the backed-up directory, or as it was on the host.
--json prints the entries as one JSON array.
`,
	"forget": `Usage: bulkctl forget [SNAPSHOT...] -r REPO [flags]

Forget snapshots: the ones named (IDs or unique ID prefixes), or those a
keep policy in restic's words does not keep. The policy applies to each
source (host and path) on its own; a snapshot is kept if any rule keeps
it: the newest --keep-last, the newest of each of the newest N hours,
days, ISO weeks, months or years that have one, every one within
--keep-within of the source's newest. Counts take "unlimited". --dry-run
lists what would be forgotten and why each kept snapshot is kept. --tag,
--host and --path (each repeatable) limit the policy to the snapshots they
select. Only snapshot objects go: "bulkctl prune" then deletes the chunks
nothing names.
`,
	"prune": `Usage: bulkctl prune -r REPO [flags]

Delete the chunks no snapshot names, while backups into the repository go
on: the prune waits for the backups that were running when it began, and
keeps every chunk a later backup reuses (docs/format.md, section 10). It
runs as a job on the fleet's compressors, one shard of the chunk hash
space each (for an encrypted repository on the coordinator, which alone
reads its manifests); killed, it resumes when its coordinator starts
again. --dry-run counts what would be deleted.
`,
	"check": `Usage: bulkctl check -r REPO [flags]

Check the repository without the sources: every snapshot can be read and
every chunk it names is stored whole (header and length); with
--read-data every chunk is also read back and checked against its hash,
with --read-data-subset a share of them (another share each run). Missing
and damaged chunks are named with the snapshots and files they belong to,
and recorded, so the next backup that produces them stores them again.
Exits 1 if anything is missing or damaged. Runs as a job on the fleet's
compressors (for an encrypted repository on the coordinator; --read-data
there only without --nats, in this process, which unlocks the repository
with its password or identity).
`,
	"jobs": `Usage: bulkctl jobs --nats URL [flags]

List a running coordinator's jobs, newest first.
`,
	"job": `Usage: bulkctl job JOB_ID --nats URL [flags]

Show one job of a running coordinator; --watch follows it to its end.
`,
	"cancel": `Usage: bulkctl cancel JOB_ID --nats URL [flags]

Cancel a running job and wait until it has stopped.
`,
	"history": `Usage: bulkctl history HOST:PATH --nats URL [flags]

List every backup of a source: when, result, bytes, stored, duration, MB/s.
`,
	"workers": `Usage: bulkctl workers --nats URL [flags]

List the readers and compressors a running coordinator knows.
`,
	"schedule add": `Usage: bulkctl schedule add NAME --source HOST:PATH -r REPO --cron "0 2 * * *" --nats URL [flags]
       bulkctl schedule add NAME --prune -r REPO --cron "0 4 * * 0" --nats URL [flags]

Add a schedule: the coordinator backs up the source at each window of the
cron expression (minute hour day-of-month month day-of-week), read in
--timezone, and after each successful backup forgets the source's
snapshots its keep policy (--keep-*, as "bulkctl forget") does not keep.
With --prune it prunes the repository at each window instead.
`,
	"schedule list": `Usage: bulkctl schedule list --nats URL [flags]

List the schedules with their next and last runs.
`,
	"schedule show": `Usage: bulkctl schedule show NAME --nats URL [flags]

Show one schedule, with why its last window was skipped if it was.
`,
	"schedule pause": `Usage: bulkctl schedule pause NAME --nats URL [flags]

Pause a schedule: its windows pass without a backup until it is resumed.
`,
	"schedule resume": `Usage: bulkctl schedule resume NAME --nats URL [flags]

Resume a paused schedule from its next window.
`,
	"schedule rm": `Usage: bulkctl schedule rm NAME --nats URL [flags]

Remove a schedule.
`,
}

// parse parses a command's arguments (flags > BULK_* env > YAML). Asked
// for help, it prints the command's help to stdout and returns
// flag.ErrHelp; a bad flag is a usage error, printed once, by run.
func parse(e *env, fs *flag.FlagSet, args []string) ([]string, error) {
	return parseGiven(e, fs, args, nil)
}

// parseGiven is parse that also records in given (if not nil) the flags
// set on the command line, not by the environment or a file.
func parseGiven(e *env, fs *flag.FlagSet, args []string, given map[string]bool) ([]string, error) {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	pos, err := config.Parse(fs, args, config.Options{Given: given})
	if errors.Is(err, flag.ErrHelp) {
		printHelp(e.stdout, fs)
		return nil, err
	}
	if err != nil {
		return nil, usageError("%v", err)
	}
	return pos, nil
}

// printHelp writes a command's help and its flags to w.
func printHelp(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprint(w, commandHelp[strings.TrimPrefix(fs.Name(), "bulkctl ")])
	fmt.Fprintln(w, "\nFlags:")
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}
