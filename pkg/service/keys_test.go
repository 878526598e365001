package service

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bulkbackup/bulkbackup/pkg/keyring"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
)

func writeKeyFile(t *testing.T, path string, k *keyring.WriteKey, mode os.FileMode) {
	t.Helper()
	data, err := k.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
}

func TestWriteKeys(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a, _ := keyring.GenerateKeys("repo-a")
	b, _ := keyring.GenerateKeys("repo-b")
	writeKeyFile(t, filepath.Join(dir, "a.key"), &a.WriteKey, 0o600)
	keysDir := filepath.Join(dir, "keys")
	if err := os.Mkdir(keysDir, 0o700); err != nil {
		t.Fatal(err)
	}
	keys, err := WriteKeys(filepath.Join(dir, "a.key") + string(os.PathListSeparator) + keysDir)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := keys(repository.Config{ID: "repo-a"}); err != nil || c.Write.Check() != a.Check() {
		t.Fatalf("repo-a: %v", err)
	}
	if _, err := keys(repository.Config{ID: "repo-b"}); err == nil || !strings.Contains(err.Error(), EnvWriteKeyFile) {
		t.Fatalf("repo-b before its key: err = %v, want one naming %s", err, EnvWriteKeyFile)
	}
	// A key put in the directory later is found without a restart.
	writeKeyFile(t, filepath.Join(keysDir, "b.key"), b.WithoutMeta(), 0o600)
	if c, err := keys(repository.Config{ID: "repo-b"}); err != nil || c.Write.Meta != nil || c.Write.Check() != b.Check() {
		t.Fatalf("repo-b after its key: %v", err)
	}
	// Files others may read, and files that are not keys, are refused.
	writeKeyFile(t, filepath.Join(dir, "open.key"), &a.WriteKey, 0o644)
	if _, err := WriteKeys(filepath.Join(dir, "open.key")); !errors.Is(err, keyring.ErrInsecureFile) {
		t.Errorf("a key file others may read: err = %v, want ErrInsecureFile", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "junk"), []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteKeys(filepath.Join(dir, "junk")); !errors.Is(err, keyring.ErrDamaged) {
		t.Errorf("a file that is not a key: err = %v, want ErrDamaged", err)
	}
	if _, err := WriteKeys(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing key file was accepted")
	}
	if k, err := WriteKeys(""); err != nil {
		t.Errorf("no key files: %v", err)
	} else if _, err := k(repository.Config{ID: "repo-a"}); err == nil {
		t.Error("no key files gave a key")
	}
}
