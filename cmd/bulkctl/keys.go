package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"filippo.io/age"

	"github.com/bulkbackup/bulkbackup/pkg/keyring"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/store/storeurl"
)

// initResult is what `init --json` prints.
type initResult struct {
	Repository  string   `json:"repository"`
	ID          string   `json:"id"`
	Encrypted   bool     `json:"encrypted"`
	Fingerprint string   `json:"fingerprint,omitempty"`
	Keys        []string `json:"keys,omitempty"`
}

// keyFlags are the flags of the commands that wrap keys.
type keyFlags struct {
	recipients stringList
	label      string
	workFactor int
}

func (k *keyFlags) register(fs *flag.FlagSet) {
	fs.Var(&k.recipients, "recipient", "also wrap the keys to this age recipient (age1…, age1pq1…) or SSH public key (repeatable)")
	fs.StringVar(&k.label, "label", "", "a name for the key, shown by key list (not secret, not authenticated)")
	fs.IntVar(&k.workFactor, "work-factor", keyring.DefaultWorkFactor,
		fmt.Sprintf("scrypt work factor of a password (log2 N: %d takes about a second and 256 MiB; at most %d)", keyring.DefaultWorkFactor, keyring.MaxWorkFactor))
}

// recipientsOf parses the --recipient values.
func (k *keyFlags) recipientsOf() ([]age.Recipient, error) {
	var out []age.Recipient
	for _, s := range k.recipients {
		r, err := keyring.ParseRecipient(s)
		if err != nil {
			return nil, usageError("--recipient: %v", err)
		}
		out = append(out, r)
	}
	return out, nil
}

// wrap wraps k by password (if not nil) and to the recipients (if any).
func (k *keyFlags) wrap(keys *keyring.Keys, pw []byte, recipients []age.Recipient) ([]repository.KeyObject, error) {
	var objs []repository.KeyObject
	if pw != nil {
		info, data, err := keyring.WrapPassword(keys, pw, k.label, k.workFactor)
		if err != nil {
			return nil, err
		}
		objs = append(objs, repository.KeyObject{Info: info, Data: data})
	}
	if len(recipients) > 0 {
		info, data, err := keyring.WrapRecipients(keys, recipients, k.label)
		if err != nil {
			return nil, err
		}
		objs = append(objs, repository.KeyObject{Info: info, Data: data})
	}
	return objs, nil
}

func runInit(ctx context.Context, e *env, args []string) error {
	var c common
	var kf keyFlags
	fs := newFlagSet("init", &c)
	plaintext := fs.Bool("plaintext", false, "create an unencrypted repository: anyone who can read it reads the backups")
	kf.register(fs)
	pos, err := parse(e, fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageError("unexpected arguments %q", pos)
	}
	name, err := repoArg(c.repo)
	if err != nil {
		return err
	}
	recipients, err := kf.recipientsOf()
	if err != nil {
		return err
	}
	if *plaintext && (len(recipients) > 0 || os.Getenv(envPasswordFile) != "" || os.Getenv(envPassword) != "") {
		return usageError("--plaintext takes no password or recipient: it encrypts nothing")
	}
	if kf.workFactor < 1 || kf.workFactor > keyring.MaxWorkFactor {
		return usageError("--work-factor %d: want 1 to %d", kf.workFactor, keyring.MaxWorkFactor)
	}
	opts := repository.InitOptions{Plaintext: *plaintext}
	if !*plaintext {
		prompt := ""
		if len(recipients) == 0 {
			prompt = "new password of repository " + name
		}
		pw, err := password(envPasswordFile, envPassword, prompt, true, e.stderr)
		if err != nil {
			return err
		}
		if pw == nil && len(recipients) == 0 {
			return usageError("an encrypted repository needs a password (%s, %s) or --recipient; "+
				"--plaintext creates one that is not encrypted", envPasswordFile, envPassword)
		}
		opts.Wrap = func(k *keyring.Keys) ([]repository.KeyObject, error) { return kf.wrap(k, pw, recipients) }
	}
	st, err := storeurl.Open(ctx, name, storeurl.Options{S3: s3Options(&c), Create: true})
	if err != nil {
		return err
	}
	repo, keys, err := repository.Init(ctx, st, opts)
	if err != nil {
		return err
	}
	res := initResult{Repository: repo.Location(), ID: repo.Config().ID, Encrypted: keys != nil}
	if keys != nil {
		res.Fingerprint = keys.Fingerprint()
		stored, err := repo.Keys(ctx)
		if err != nil {
			return err
		}
		for _, k := range stored {
			res.Keys = append(res.Keys, k.Info.ID)
		}
	}
	if c.json {
		return json.NewEncoder(e.stdout).Encode(res)
	}
	if keys == nil {
		fmt.Fprintf(e.stdout, "created repository %s (id %s), NOT encrypted: whoever can read it reads the backups\n", res.Repository, res.ID)
		return nil
	}
	fmt.Fprintf(e.stdout, "created encrypted repository %s (id %s)\n  key fingerprint %s\n", res.Repository, res.ID, res.Fingerprint)
	fmt.Fprintf(e.stdout, "  %s; keep the password or identity safe: without one, nothing in it can be read\n", plural(len(res.Keys), "key"))
	return nil
}

const keyUsage = `Usage:
  bulkctl key list -r REPO [--json]
  bulkctl key add -r REPO [--recipient age1…]... [--label NAME]
  bulkctl key remove KEY_ID -r REPO
  bulkctl key passwd -r REPO
  bulkctl key write-key -r REPO --for coordinator|worker -o FILE
  bulkctl key identity -o FILE

The keys of an encrypted repository are stored in it, wrapped by passwords
or to age identities. Every command but list needs one that opens it now:
its password in a file named by BULK_PASSWORD_FILE (or in BULK_PASSWORD),
or its identity in a file named by BULK_IDENTITY_FILE. A new password comes
from BULK_NEW_PASSWORD_FILE (or BULK_NEW_PASSWORD), or is asked for on a
terminal. Secrets are never flags.

add wraps the keys by a new password, or to --recipient. remove deletes a
key object (never the last, nor the one that opened the repository).
passwd replaces the password of the key that opened the repository.
write-key writes the write key file the fleet's services load
(BULK_WRITE_KEY_FILE): --for coordinator can read and write snapshots,
--for worker (readers, compressors) only adds chunks; neither opens a
chunk. identity makes a new age identity file (as age-keygen does) and
prints its recipient, for init --recipient or key add --recipient.
`

func runKey(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		return usageError("want a key command: list, add, remove, passwd, write-key or identity")
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "list":
		return keyList(ctx, e, args)
	case "add":
		return keyAdd(ctx, e, args)
	case "remove", "rm":
		return keyRemove(ctx, e, args)
	case "passwd":
		return keyPasswd(ctx, e, args)
	case "write-key":
		return keyWriteKey(ctx, e, args)
	case "identity":
		return keyIdentity(e, args)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(e.stdout, keyUsage)
		return flag.ErrHelp
	default:
		return usageError("unknown key command %q: want list, add, remove, passwd, write-key or identity", sub)
	}
}

// openEncrypted opens the repository of c, which must be encrypted,
// locked.
func openEncrypted(ctx context.Context, c *common) (*repository.Repository, error) {
	name, err := repoArg(c.repo)
	if err != nil {
		return nil, err
	}
	st, err := storeurl.Open(ctx, name, storeurl.Options{S3: s3Options(c)})
	if err != nil {
		return nil, err
	}
	repo, err := repository.Open(ctx, st, repository.OpenOptions{})
	if err != nil {
		return nil, err
	}
	if !repo.Encrypted() {
		return nil, fmt.Errorf("repository %s is not encrypted: it has no keys", repo.Location())
	}
	return repo, nil
}

// keyEntry is one line of `key list --json`.
type keyEntry struct {
	ID         string    `json:"id"`
	Kind       string    `json:"kind"`
	Label      string    `json:"label,omitempty"`
	Created    time.Time `json:"created"`
	Recipients []string  `json:"recipients,omitempty"`
	Error      string    `json:"error,omitempty"`
}

func keyList(ctx context.Context, e *env, args []string) error {
	var c common
	fs := newFlagSet("key list", &c)
	pos, err := parse(e, fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageError("unexpected arguments %q", pos)
	}
	repo, err := openEncrypted(ctx, &c)
	if err != nil {
		return err
	}
	keys, err := repo.Keys(ctx)
	if err != nil {
		return err
	}
	entries := make([]keyEntry, 0, len(keys))
	for _, k := range keys {
		ke := keyEntry{ID: k.Info.ID, Kind: k.Info.Kind, Label: k.Info.Label, Created: k.Info.Created, Recipients: k.Info.Recipients}
		if k.Err != nil {
			ke.Error = k.Err.Error()
		}
		entries = append(entries, ke)
	}
	if c.json {
		return json.NewEncoder(e.stdout).Encode(entries)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tKIND\tCREATED\tLABEL\tRECIPIENTS")
	for _, k := range entries {
		what := strings.Join(k.Recipients, " ")
		if k.Error != "" {
			what = "unreadable: " + k.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k.ID, k.Kind, k.Created.Local().Format("2006-01-02 15:04:05"), k.Label, what)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s in repository %s\n", plural(len(entries), "key"), repo.Config().ID)
	return nil
}

func keyAdd(ctx context.Context, e *env, args []string) error {
	var c common
	var kf keyFlags
	fs := newFlagSet("key add", &c)
	kf.register(fs)
	pos, err := parse(e, fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageError("unexpected arguments %q", pos)
	}
	recipients, err := kf.recipientsOf()
	if err != nil {
		return err
	}
	repo, err := openEncrypted(ctx, &c)
	if err != nil {
		return err
	}
	u, err := unlock(ctx, repo, e.stderr)
	if err != nil {
		return err
	}
	var pw []byte
	if len(recipients) == 0 {
		if pw, err = password(envNewPasswordFile, envNewPassword, "new password", true, e.stderr); err != nil {
			return err
		}
		if pw == nil {
			return usageError("give the new password in %s (or %s), or --recipient", envNewPasswordFile, envNewPassword)
		}
	}
	objs, err := kf.wrap(u.Keys, pw, recipients)
	if err != nil {
		return err
	}
	for _, o := range objs {
		if err := repo.AddKey(ctx, o); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "added key %s (%s) to repository %s\n", o.Info.ID, o.Info.Kind, repo.Config().ID)
	}
	return nil
}

func keyRemove(ctx context.Context, e *env, args []string) error {
	var c common
	fs := newFlagSet("key remove", &c)
	pos, err := parse(e, fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError("want one KEY_ID (see key list)")
	}
	repo, err := openEncrypted(ctx, &c)
	if err != nil {
		return err
	}
	// Only someone who can open the repository removes its keys: a
	// bucket writer can delete objects anyway, but bulkctl is no help.
	u, err := unlock(ctx, repo, e.stderr)
	if err != nil {
		return err
	}
	if u.Key.ID == pos[0] {
		return fmt.Errorf("key %s is the one that opened the repository now: use key passwd to change its password, "+
			"or remove it with another key", pos[0])
	}
	if err := repo.RemoveKey(ctx, pos[0]); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "removed key %s from repository %s\n", pos[0], repo.Config().ID)
	return nil
}

func keyPasswd(ctx context.Context, e *env, args []string) error {
	var c common
	fs := newFlagSet("key passwd", &c)
	workFactor := fs.Int("work-factor", keyring.DefaultWorkFactor, "scrypt work factor of the new password (log2 N)")
	pos, err := parse(e, fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageError("unexpected arguments %q", pos)
	}
	repo, err := openEncrypted(ctx, &c)
	if err != nil {
		return err
	}
	u, err := unlock(ctx, repo, e.stderr)
	if err != nil {
		return err
	}
	if u.Key.Kind != keyring.KindPassword {
		return fmt.Errorf("key %s, which opened the repository, is not a password: key add adds a password", u.Key.ID)
	}
	pw, err := password(envNewPasswordFile, envNewPassword, "new password", true, e.stderr)
	if err != nil {
		return err
	}
	if pw == nil {
		return usageError("give the new password in %s (or %s)", envNewPasswordFile, envNewPassword)
	}
	info, data, err := keyring.WrapPassword(u.Keys, pw, u.Key.Label, *workFactor)
	if err != nil {
		return err
	}
	// The new key first: at no moment does the repository lack one.
	if err := repo.AddKey(ctx, repository.KeyObject{Info: info, Data: data}); err != nil {
		return err
	}
	if err := repo.RemoveKey(ctx, u.Key.ID); err != nil {
		return fmt.Errorf("the new password works (key %s), but the old key %s remains: %w", info.ID, u.Key.ID, err)
	}
	fmt.Fprintf(e.stdout, "changed the password: key %s replaces key %s in repository %s\n", info.ID, u.Key.ID, repo.Config().ID)
	return nil
}

func keyWriteKey(ctx context.Context, e *env, args []string) error {
	var c common
	fs := newFlagSet("key write-key", &c)
	forWhom := fs.String("for", "", "coordinator (writes and reads snapshots) or worker (readers and compressors: adds chunks only)")
	out := fs.String("o", "", "the file to write (created with mode 0600; never overwritten)")
	pos, err := parse(e, fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageError("unexpected arguments %q", pos)
	}
	if *out == "" {
		return usageError("-o FILE is required: a write key is a secret, and is not printed")
	}
	repo, err := openEncrypted(ctx, &c)
	if err != nil {
		return err
	}
	u, err := unlock(ctx, repo, e.stderr)
	if err != nil {
		return err
	}
	wk := &u.Keys.WriteKey
	switch *forWhom {
	case "coordinator":
	case "worker":
		wk = wk.WithoutMeta()
	default:
		return usageError("--for %q: want coordinator or worker", *forWhom)
	}
	data, err := wk.Marshal()
	if err != nil {
		return err
	}
	if err := writeSecretFile(*out, data, "write-key"); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "wrote the %s write key of repository %s to %s (fingerprint %s)\n", *forWhom, repo.Config().ID, *out, wk.Fingerprint())
	return nil
}

func keyIdentity(e *env, args []string) error {
	var c common
	fs := newFlagSet("key identity", &c)
	out := fs.String("o", "", "the identity file to write (created with mode 0600; never overwritten)")
	pos, err := parse(e, fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 || *out == "" {
		return usageError("want -o FILE and no arguments")
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return err
	}
	content := fmt.Sprintf("# created: %s\n# public key: %s\n%s\n", time.Now().UTC().Format(time.RFC3339), id.Recipient(), id)
	if err := writeSecretFile(*out, []byte(content), "key identity"); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, id.Recipient())
	return nil
}

// writeSecretFile writes data to a new file at path, mode 0600, and never
// overwrites one (cmd names the command in the error); a failed write
// leaves no file.
func writeSecretFile(path string, data []byte, cmd string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%s exists; %s never overwrites a file", path, cmd)
	}
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
