package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"filippo.io/age"
	"golang.org/x/term"

	"github.com/bulkbackup/bulkbackup/pkg/keyring"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/service"
)

// The environment variables secrets come from: never flags, which the
// process list shows, nor the configuration file.
const (
	envPasswordFile    = "BULK_PASSWORD_FILE"     // a file holding the repository's password
	envPassword        = "BULK_PASSWORD"          // the password itself (a file is safer)
	envNewPasswordFile = "BULK_NEW_PASSWORD_FILE" // key add, key passwd: the new password
	envNewPassword     = "BULK_NEW_PASSWORD"
	envIdentityFile    = "BULK_IDENTITY_FILE" // age identities (or an SSH private key) that open the repository
	envKnownHosts      = "BULK_KNOWN_HOSTS"   // the reader hosts' trusted recipients
)

// errNoSecret is returned when an encrypted repository needs a secret and
// none was given.
var errNoSecret = errors.New("give its password in a file named by " + envPasswordFile + " (or " + envPassword +
	"), or its age identity in a file named by " + envIdentityFile)

// stdinTerminal reports whether a password can be asked for on the
// terminal; tests replace it.
var stdinTerminal = func() bool { return term.IsTerminal(int(os.Stdin.Fd())) }

// readTerminalPassword reads a password from the terminal without echo.
var readTerminalPassword = func(prompt string, stderr io.Writer) ([]byte, error) {
	fmt.Fprint(stderr, prompt)
	p, err := term.ReadPassword(int(os.Stdin.Fd()))
	fmt.Fprintln(stderr)
	return p, err
}

// password returns the password of fileVar or valueVar, or, on a terminal,
// the one typed at prompt (twice when confirm); nil when there is none.
func password(fileVar, valueVar, prompt string, confirm bool, stderr io.Writer) ([]byte, error) {
	if path := os.Getenv(fileVar); path != "" {
		p, err := keyring.ReadPasswordFile(path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", fileVar, err)
		}
		return p, nil
	}
	if p := os.Getenv(valueVar); p != "" {
		return []byte(p), nil
	}
	if prompt == "" || !stdinTerminal() {
		return nil, nil
	}
	p, err := readTerminalPassword(prompt+": ", stderr)
	if err != nil {
		return nil, fmt.Errorf("read the password: %w", err)
	}
	if len(p) == 0 {
		return nil, errors.New("empty password")
	}
	if confirm {
		again, err := readTerminalPassword("again: ", stderr)
		if err != nil {
			return nil, fmt.Errorf("read the password: %w", err)
		}
		if !bytes.Equal(p, again) {
			return nil, errors.New("the passwords differ")
		}
	}
	return p, nil
}

// identities returns what opens an encrypted repository's key objects:
// the password (BULK_PASSWORD_FILE, BULK_PASSWORD, or asked on a
// terminal when no identity file is given) and the identities of
// BULK_IDENTITY_FILE.
func identities(stderr io.Writer, location string) ([]age.Identity, error) {
	var ids []age.Identity
	if path := os.Getenv(envIdentityFile); path != "" {
		got, err := keyring.LoadIdentityFile(path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", envIdentityFile, err)
		}
		ids = append(ids, got...)
	}
	prompt := ""
	if len(ids) == 0 {
		prompt = "password of repository " + location
	}
	p, err := password(envPasswordFile, envPassword, prompt, false, stderr)
	if err != nil {
		return nil, err
	}
	if p != nil {
		id, err := keyring.PasswordIdentity(p)
		if err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// unlock opens an encrypted repository's keys with the secrets of the
// environment, failing clearly when none is given or none opens it.
func unlock(ctx context.Context, repo *repository.Repository, stderr io.Writer) (*repository.Unlocked, error) {
	ids, err := identities(stderr, repo.Location())
	if err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("repository %s is encrypted: %w", repo.Location(), errNoSecret)
	}
	u, err := repo.Unlock(ctx, ids...)
	if errors.Is(err, keyring.ErrNoKey) {
		return nil, fmt.Errorf("wrong password or identity: %w", err)
	}
	return u, err
}

// need says what a command needs of an encrypted repository.
type need int

const (
	// needMeta: read snapshots (snapshots, ls): the password or identity,
	// or a write key with metadata (BULK_WRITE_KEY_FILE).
	needMeta need = iota + 1
	// needAll: read chunks too (verify, restore): the password or identity.
	needAll
)

// openRepo opens an existing repository directly, unlocked as far as the
// command needs: a plaintext one as it is, an encrypted one with the
// secrets of the environment.
func openRepo(ctx context.Context, c *common, e *env, n need) (*repository.Repository, *repository.Unlocked, error) {
	name, err := repoArg(c.repo)
	if err != nil {
		return nil, nil, err
	}
	repo, err := service.Repos(c.s3Endpoint, 0, nil, nil).Get(ctx, name, false)
	if err != nil || !repo.Encrypted() {
		return repo, nil, err
	}
	if n == needMeta && os.Getenv(envPasswordFile) == "" && os.Getenv(envPassword) == "" && os.Getenv(envIdentityFile) == "" {
		if keys, err := service.WriteKeysFromEnv(); err == nil && os.Getenv(service.EnvWriteKeyFile) != "" {
			if creds, err := keys(repo.Config()); err == nil && creds.Write.Meta != nil {
				r, err := repo.WithCredentials(creds)
				return r, nil, err
			}
		}
	}
	u, err := unlock(ctx, repo, e.stderr)
	if err != nil {
		return nil, nil, err
	}
	r, err := repo.WithCredentials(repository.Credentials{Write: &u.Keys.WriteKey, Open: keyring.NewOpener(u.Keys.Private)})
	return r, u, err
}

// knownHostsFile returns the file of the reader hosts' trusted recipients:
// BULK_KNOWN_HOSTS, or bulkbackup/known_hosts in the user's configuration
// directory.
func knownHostsFile() (string, error) {
	if p := os.Getenv(envKnownHosts); p != "" {
		return p, nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("no file for the hosts' keys (set %s): %w", envKnownHosts, err)
	}
	return filepath.Join(dir, "bulkbackup", "known_hosts"), nil
}

// trustedRecipients returns the age recipients of the live readers of
// host, which a restore there wraps its grant to, after checking each
// against the known hosts file: the first recipients seen for a host are
// trusted and recorded (as ssh does with host keys), and a recipient the
// file does not list for a host it lists is refused, so that a
// coordinator or NATS account that announced a reader of its own could not
// collect the keys of a restore.
func trustedRecipients(workers []queue.WorkerStatus, host string, stderr io.Writer) ([]age.Recipient, error) {
	var announced []string
	for _, w := range workers {
		if w.Role == queue.RoleReader && w.Host == host && w.Recipient != "" && !slices.Contains(announced, w.Recipient) {
			announced = append(announced, w.Recipient)
		}
	}
	if len(announced) == 0 {
		return nil, fmt.Errorf("no reader of host %s announces a host key: is it running, with a host identity (BULK_HOST_IDENTITY_FILE)?", host)
	}
	path, err := knownHostsFile()
	if err != nil {
		return nil, err
	}
	known, err := readKnownHosts(path)
	if err != nil {
		return nil, err
	}
	if pinned := known[host]; len(pinned) == 0 {
		if err := appendKnownHosts(path, host, announced); err != nil {
			return nil, err
		}
		for _, r := range announced {
			fmt.Fprintf(stderr, "bulkctl: trusting host %s's key %s from now on (recorded in %s)\n", host, r, path)
		}
	} else {
		for _, r := range announced {
			if !slices.Contains(pinned, r) {
				return nil, fmt.Errorf("a reader of host %s announces the key %s, which %s does not list for it: "+
					"if the host's identity was replaced, check the key on the host and add the line %q to that file", host, r, path, host+" "+r)
			}
		}
	}
	var out []age.Recipient
	for _, s := range announced {
		r, err := age.ParseX25519Recipient(s)
		if err != nil {
			return nil, fmt.Errorf("host %s announces a malformed key: %w", host, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// readKnownHosts reads a known hosts file: lines "HOST RECIPIENT", # for
// comments. A missing file lists nothing.
func readKnownHosts(path string) (map[string][]string, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return map[string][]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("known hosts: %w", err)
	}
	defer f.Close()
	known := make(map[string][]string)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 2 {
			return nil, fmt.Errorf("known hosts %s, line %d: want HOST RECIPIENT", path, n)
		}
		known[fields[0]] = append(known[fields[0]], fields[1])
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("known hosts: %w", err)
	}
	return known, nil
}

// appendKnownHosts records host's recipients in the known hosts file.
func appendKnownHosts(path, host string, recipients []string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("known hosts: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("known hosts: %w", err)
	}
	for _, r := range recipients {
		fmt.Fprintf(f, "%s %s\n", host, r)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("known hosts: %w", err)
	}
	return nil
}
