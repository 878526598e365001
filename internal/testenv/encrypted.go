package testenv

import (
	"testing"

	"filippo.io/age"

	"github.com/bulkbackup/bulkbackup/pkg/keyring"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/store"
)

// EncryptedRepository makes a new encrypted repository on st, its keys
// wrapped to a fresh age identity, and returns it open with all of its
// keys, and the keys: the coordinator's write key is &keys.WriteKey, the
// workers' keys.WithoutMeta().
func EncryptedRepository(t testing.TB, st store.Store) (*repository.Repository, *keyring.Keys) {
	t.Helper()
	repo, keys, err := repository.Init(t.Context(), st, repository.InitOptions{Wrap: func(k *keyring.Keys) ([]repository.KeyObject, error) {
		id, err := age.GenerateX25519Identity()
		if err != nil {
			return nil, err
		}
		info, data, err := keyring.WrapRecipients(k, []age.Recipient{id.Recipient()}, "admin")
		return []repository.KeyObject{{Info: info, Data: data}}, err
	}})
	if err != nil {
		t.Fatal(err)
	}
	return repo, keys
}
