package service

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"filippo.io/age"

	"github.com/bulkbackup/bulkbackup/pkg/keyring"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
)

// EnvWriteKeyFile names the write key files of the encrypted repositories
// a service writes to (bulkctl key write-key makes them): files, or
// directories of them, separated by the OS's path list separator (":" on
// Linux). A key file put in such a directory later is found when a
// repository without a key is opened, without a restart. A secret's path
// comes from the environment only, like the other secrets.
const EnvWriteKeyFile = "BULK_WRITE_KEY_FILE"

// WriteKeys loads the write key files named in list (EnvWriteKeyFile's
// form; empty: none) and returns the credentials they give: for each
// repository a key is for, its write key. An encrypted repository without
// a key is refused when opened, naming the repository and the variable,
// after the directories were read again. A file that cannot be read,
// others may read (keyring.ErrInsecureFile), or is not a write key fails
// here, before the service starts, or, found later in a directory, the
// opening of its repository.
func WriteKeys(list string) (repository.KeyFunc, error) {
	ks := &keySet{}
	for _, path := range filepath.SplitList(list) {
		if path = strings.TrimSpace(path); path != "" {
			ks.paths = append(ks.paths, path)
		}
	}
	if err := ks.load(); err != nil {
		return nil, err
	}
	return ks.credentials, nil
}

// keySet is the write keys of EnvWriteKeyFile's files and directories.
type keySet struct {
	paths []string
	mu    sync.Mutex
	keys  map[string]*keyring.WriteKey // by repository ID
}

// load reads every file and directory of the set again.
func (ks *keySet) load() error {
	keys := make(map[string]*keyring.WriteKey)
	add := func(path string) error {
		k, err := keyring.LoadWriteKeyFile(path)
		if err != nil {
			return fmt.Errorf("%s: %w", EnvWriteKeyFile, err)
		}
		if old, dup := keys[k.Repository]; dup && old.Check() != k.Check() {
			return fmt.Errorf("%s: two different keys for repository %s", EnvWriteKeyFile, k.Repository)
		}
		keys[k.Repository] = k
		return nil
	}
	for _, path := range ks.paths {
		fi, err := os.Stat(path)
		if err != nil {
			return fmt.Errorf("%s: %w", EnvWriteKeyFile, err)
		}
		if !fi.IsDir() {
			if err := add(path); err != nil {
				return err
			}
			continue
		}
		entries, err := os.ReadDir(path)
		if err != nil {
			return fmt.Errorf("%s: %w", EnvWriteKeyFile, err)
		}
		for _, e := range entries {
			if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
				if err := add(filepath.Join(path, e.Name())); err != nil {
					return err
				}
			}
		}
	}
	ks.mu.Lock()
	ks.keys = keys
	ks.mu.Unlock()
	return nil
}

// credentials is the set's KeyFunc.
func (ks *keySet) credentials(cfg repository.Config) (repository.Credentials, error) {
	ks.mu.Lock()
	k := ks.keys[cfg.ID]
	ks.mu.Unlock()
	if k == nil {
		if err := ks.load(); err != nil {
			return repository.Credentials{}, err
		}
		ks.mu.Lock()
		k = ks.keys[cfg.ID]
		ks.mu.Unlock()
	}
	if k == nil {
		return repository.Credentials{}, fmt.Errorf("repository %s is encrypted and this process holds no write key for it: "+
			"set %s to its write key file, or put the file in a directory it names (bulkctl key write-key)", cfg.ID, EnvWriteKeyFile)
	}
	return repository.Credentials{Write: k}, nil
}

// WriteKeysFromEnv is WriteKeys of the environment's EnvWriteKeyFile.
func WriteKeysFromEnv() (repository.KeyFunc, error) {
	return WriteKeys(os.Getenv(EnvWriteKeyFile))
}

// EnvHostIdentityFile names the file of a reader host's age identity,
// which restore clients wrap the keys of restores of encrypted
// repositories to. Unset, it is DefaultHostIdentityFile.
const EnvHostIdentityFile = "BULK_HOST_IDENTITY_FILE"

// DefaultHostIdentityFile returns where a reader keeps its host identity
// when EnvHostIdentityFile is unset: bulkbackup/host-identity in the
// user's configuration directory ($XDG_CONFIG_HOME, ~/.config).
func DefaultHostIdentityFile() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "bulkbackup", "host-identity"), nil
}

// HostIdentityFromEnv loads this host's age identity from
// EnvHostIdentityFile, creating it (mode 0600) on first use
// (keyring.LoadOrCreateHostIdentity). When the variable is unset and the
// default file cannot be made, the reader runs without one (it restores
// no encrypted repository) and says so; a file named explicitly that
// cannot be read or made is an error.
func HostIdentityFromEnv(logger *slog.Logger) (*age.X25519Identity, error) {
	path, explicit := os.LookupEnv(EnvHostIdentityFile)
	if !explicit || path == "" {
		var err error
		if path, err = DefaultHostIdentityFile(); err != nil {
			logger.Warn("no host identity: restores of encrypted repositories to this host will fail", "err", err)
			return nil, nil
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			logger.Warn("no host identity: restores of encrypted repositories to this host will fail", "err", err)
			return nil, nil
		}
	}
	id, err := keyring.LoadOrCreateHostIdentity(path)
	if err != nil {
		if !explicit {
			logger.Warn("no host identity: restores of encrypted repositories to this host will fail", "file", path, "err", err)
			return nil, nil
		}
		return nil, fmt.Errorf("%s: %w", EnvHostIdentityFile, err)
	}
	logger.Info("host identity", "file", path, "recipient", id.Recipient().String())
	return id, nil
}
