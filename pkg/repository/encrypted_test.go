package repository_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/bulkbackup/bulkbackup/pkg/chunk"
	"github.com/bulkbackup/bulkbackup/pkg/keyring"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/store"
)

// encryptedEnv returns a directory store holding a new encrypted repository
// whose keys open with testPassword and with the returned identity.
func encryptedEnv(t *testing.T) (env, *repository.Repository, *age.X25519Identity) {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	e := newDirEnv(t)
	e.encrypted = true
	r, keys, err := repository.Init(t.Context(), e.st, repository.InitOptions{Wrap: func(k *keyring.Keys) ([]repository.KeyObject, error) {
		objs, err := wrapPassword(testPassword)(k)
		if err != nil {
			return nil, err
		}
		info, data, err := keyring.WrapRecipients(k, []age.Recipient{id.Recipient()}, "admin")
		return append(objs, repository.KeyObject{Info: info, Data: data}), err
	}})
	if err != nil {
		t.Fatal(err)
	}
	e.keys = keys
	return e, r, id
}

// openWith opens the env's repository with the given credentials.
func openWith(t *testing.T, e env, creds repository.Credentials) *repository.Repository {
	t.Helper()
	r, err := repository.Open(t.Context(), e.st, repository.OpenOptions{Keys: func(repository.Config) (repository.Credentials, error) { return creds, nil }})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func password(t *testing.T, p string) age.Identity {
	t.Helper()
	id, err := keyring.PasswordIdentity([]byte(p))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestInit(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	e := newDirEnv(t)
	if _, _, err := repository.Init(ctx, e.st, repository.InitOptions{}); err == nil {
		t.Fatal("Init of an encrypted repository without a key object succeeded")
	}
	if _, err := e.st.Get(ctx, repository.ConfigKey); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a failed Init left a config: %v", err)
	}
	e2, r, _ := encryptedEnv(t)
	cfg := r.Config()
	if !cfg.Encrypted() || cfg.Version != repository.VersionEncrypted || cfg.Hash != repository.HashHMACSHA256 || len(cfg.KeyCheck) != 64 {
		t.Fatalf("config = %+v", cfg)
	}
	if _, _, err := repository.Init(ctx, e2.st, repository.InitOptions{Plaintext: true}); !errors.Is(err, repository.ErrExists) {
		t.Fatalf("Init over a repository = %v, want ErrExists", err)
	}
	raw, err := e2.st.Get(ctx, repository.ConfigKey)
	if err != nil {
		t.Fatal(err)
	}
	var got repository.Config
	if err := json.Unmarshal(raw, &got); err != nil || got.ID != cfg.ID {
		t.Fatalf("the config was replaced: %s", raw)
	}
	p, _, err := repository.Init(ctx, newDirEnv(t).st, repository.InitOptions{Plaintext: true})
	if err != nil || p.Config().Encrypted() || p.Config().Hash != repository.HashSHA256 {
		t.Fatalf("plaintext Init = %+v, %v", p.Config(), err)
	}
}

func TestUnlock(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	e, _, ident := encryptedEnv(t)
	locked, err := repository.Open(ctx, e.st, repository.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name    string
		ids     []age.Identity
		wantErr error
		label   string
	}{
		{"password", []age.Identity{password(t, testPassword)}, nil, "test"},
		{"identity", []age.Identity{ident}, nil, "admin"},
		{"wrong password", []age.Identity{password(t, "Tr0ub4dor&3")}, keyring.ErrNoKey, ""},
		{"nothing", nil, keyring.ErrNoKey, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			u, err := locked.Unlock(ctx, tt.ids...)
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("Unlock = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if u.Key.Label != tt.label || u.Keys.Check() != e.keys.Check() || !u.Keys.Private.Equal(e.keys.Private) {
				t.Fatalf("Unlock opened key %+v with other keys", u.Key)
			}
		})
	}

	// A bucket writer plants a key object wrapping keys of its own to our
	// recipient, ahead of ours: it is refused, and ours still opens.
	planted, err := keyring.GenerateKeys(e.keys.Repository)
	if err != nil {
		t.Fatal(err)
	}
	info, data, err := keyring.WrapRecipients(planted, []age.Recipient{ident.Recipient()}, "planted")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.st.Put(ctx, repository.KeysPrefix+info.ID, data); err != nil {
		t.Fatal(err)
	}
	u, err := locked.Unlock(ctx, ident)
	if err != nil || u.Keys.Check() != e.keys.Check() {
		t.Fatalf("Unlock with a planted key object = %v, %v; want our keys", u, err)
	}
	if err := e.st.Delete(ctx, repository.KeysPrefix+u.Key.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := locked.Unlock(ctx, ident); !errors.Is(err, repository.ErrWrongKey) {
		t.Fatalf("Unlock with only the planted key object = %v, want ErrWrongKey", err)
	}
}

// TestWriteOnly: the fleet's writers, which hold a write key without the
// private key, add chunks but cannot open any, nor read a snapshot
// without the metadata key; without any key nothing works.
func TestWriteOnly(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	e, full, _ := encryptedEnv(t)
	raw := bytes.Repeat([]byte("secret payroll "), 1000)
	snap := e.snapshot("5ec0", "job-1", t0)

	compressor := openWith(t, e, repository.Credentials{Write: e.keys.WithoutMeta()})
	id, obj := seal(t, compressor, raw)
	if want, _ := full.ChunkID(raw); id != want || id == chunk.Sum(raw) {
		t.Fatalf("the compressor's chunk ID %s, want the repository's MAC %s", id, want)
	}
	if err := compressor.PutChunk(ctx, id, obj); err != nil {
		t.Fatal(err)
	}
	if st, err := compressor.StatChunk(ctx, id); err != nil || st.State != repository.ChunkIntact {
		t.Fatalf("StatChunk = %+v, %v", st, err)
	}
	snap.Chunks[0].Hash = id.String()
	if err := compressor.SaveSnapshot(ctx, snap); !errors.Is(err, repository.ErrLocked) {
		t.Errorf("SaveSnapshot without the metadata key = %v, want ErrLocked", err)
	}
	coordinator := openWith(t, e, repository.Credentials{Write: &e.keys.WriteKey})
	if err := coordinator.SaveSnapshot(ctx, snap); err != nil {
		t.Fatal(err)
	}
	if _, err := coordinator.FindSnapshot(ctx, "latest"); err != nil {
		t.Errorf("the coordinator reads snapshots: %v", err)
	}
	for name, r := range map[string]*repository.Repository{"compressor": compressor, "coordinator": coordinator} {
		if _, err := r.GetChunk(ctx, id, nil); !errors.Is(err, repository.ErrLocked) {
			t.Errorf("%s: GetChunk = %v, want ErrLocked", name, err)
		}
	}
	if _, err := compressor.LoadSnapshot(ctx, snap.ID); !errors.Is(err, repository.ErrLocked) {
		t.Errorf("compressor: LoadSnapshot = %v, want ErrLocked", err)
	}
	// Even given the private key of another repository, nothing opens.
	other, _ := keyring.GenerateKeys(e.keys.Repository)
	thief := openWith(t, e, repository.Credentials{Write: e.keys.WithoutMeta()}).WithOpener(keyring.NewOpener(other.Private))
	if _, err := thief.GetChunk(ctx, id, nil); !errors.Is(err, keyring.ErrAuth) {
		t.Errorf("GetChunk with another private key = %v, want ErrAuth", err)
	}
	locked, err := repository.Open(ctx, e.st, repository.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := locked.ChunkID(raw); !errors.Is(err, repository.ErrLocked) {
		t.Errorf("locked ChunkID = %v, want ErrLocked", err)
	}
	if _, err := locked.FindSnapshot(ctx, "latest"); !errors.Is(err, repository.ErrLocked) {
		t.Errorf("locked FindSnapshot = %v, want ErrLocked", err)
	}
	if got, err := full.GetChunk(ctx, id, nil); err != nil || !bytes.Equal(got, raw) {
		t.Errorf("restore client: GetChunk = %v", err)
	}
	// A write key of another repository is refused outright.
	_, err = repository.Open(ctx, e.st, repository.OpenOptions{Keys: func(repository.Config) (repository.Credentials, error) {
		return repository.Credentials{Write: &other.WriteKey}, nil
	}})
	if !errors.Is(err, repository.ErrWrongKey) {
		t.Errorf("Open with another repository's key = %v, want ErrWrongKey", err)
	}
}

// TestGrant: a restore host holding a write key and its own identity opens
// exactly the chunks its job's grant covers.
func TestGrant(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	e, full, _ := encryptedEnv(t)
	host, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	var ids []chunk.ID
	for i := range 3 {
		id, obj := seal(t, full, bytes.Repeat([]byte{byte('a' + i)}, 9000))
		if err := full.PutChunk(ctx, id, obj); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	u, err := full.Unlock(ctx, password(t, testPassword))
	if err != nil {
		t.Fatal(err)
	}
	g := keyring.NewGrant(full.Config().ID, "job-7", "", time.Now().Add(time.Hour))
	opener := keyring.NewOpener(u.Keys.Private)
	for _, id := range ids[:2] {
		st, err := full.StatChunk(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if err := g.Add(opener, st.Header.Ephemeral, st.Header.ID); err != nil {
			t.Fatal(err)
		}
	}
	wrapped, err := keyring.WrapForJob(g, host.Recipient())
	if err != nil {
		t.Fatal(err)
	}
	if err := full.PutGrant(ctx, "job-7", wrapped); err != nil {
		t.Fatal(err)
	}

	reader := openWith(t, e, repository.Credentials{Write: e.keys.WithoutMeta()})
	other, _ := age.GenerateX25519Identity()
	if _, err := reader.LoadGrant(ctx, "job-7", time.Now(), other); !errors.Is(err, keyring.ErrNoKey) {
		t.Errorf("LoadGrant with another host's identity = %v, want ErrNoKey", err)
	}
	if _, err := reader.LoadGrant(ctx, "job-8", time.Now(), host); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("LoadGrant of another job = %v, want ErrNotFound", err)
	}
	if _, err := reader.LoadGrant(ctx, "job-7", time.Now().Add(2*time.Hour), host); !errors.Is(err, keyring.ErrExpired) {
		t.Errorf("LoadGrant after it expired = %v, want ErrExpired", err)
	}
	got, err := reader.LoadGrant(ctx, "job-7", time.Now(), host)
	if err != nil {
		t.Fatal(err)
	}
	granted := reader.WithOpener(got)
	for i, id := range ids {
		_, err := granted.GetChunk(ctx, id, nil)
		if i < 2 && err != nil {
			t.Errorf("granted chunk %d: %v", i, err)
		}
		if i == 2 && !errors.Is(err, keyring.ErrWrongJob) {
			t.Errorf("chunk %d outside the grant: %v, want ErrWrongJob", i, err)
		}
	}
	if _, err := reader.GetChunk(ctx, ids[0], nil); !errors.Is(err, repository.ErrLocked) {
		t.Errorf("the reader without its grant: %v, want ErrLocked", err)
	}
	if err := full.DeleteGrant(ctx, "job-7"); err != nil {
		t.Fatal(err)
	}
	for info, err := range e.st.List(ctx, repository.GrantsPrefix) {
		t.Errorf("grant left after DeleteGrant: %v %v", info.Key, err)
	}
}

// TestTamperMetadata flips every byte of a snapshot's manifest and header
// objects: the manifest never loads; the header is either refused or, when
// refused, replaced by the manifest's description, never a changed one.
func TestTamperMetadata(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	e, r, _ := encryptedEnv(t)
	snap := e.snapshot("7a3e", "job-1", t0)
	if err := r.SaveSnapshot(ctx, snap); err != nil {
		t.Fatal(err)
	}
	want := encode(t, snap)
	for _, key := range []string{repository.SnapshotsPrefix + snap.ID, repository.HeadersPrefix + snap.ID} {
		good, err := e.st.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		for i := range good {
			bad := bytes.Clone(good)
			bad[i] ^= 0x20
			if err := e.st.Put(ctx, key, bad); err != nil {
				t.Fatal(err)
			}
			if strings.HasPrefix(key, repository.SnapshotsPrefix) {
				if got, err := r.LoadSnapshot(ctx, snap.ID); err == nil {
					t.Fatalf("manifest byte %d of %d changed: loaded %s", i, len(good), encode(t, got))
				}
			} else if h, err := r.LoadSnapshotHeader(ctx, snap.ID); err != nil || h.JobID != snap.JobID || !h.Time.Equal(snap.Time) {
				t.Fatalf("header byte %d of %d changed: LoadSnapshotHeader = %+v, %v", i, len(good), h, err)
			}
		}
		if err := e.st.Put(ctx, key, good); err != nil {
			t.Fatal(err)
		}
	}
	// A header moved to another snapshot's name does not open there.
	hdr, _ := e.st.Get(ctx, repository.HeadersPrefix+snap.ID)
	_ = e.st.Put(ctx, repository.HeadersPrefix+"7a3f", hdr)
	man, _ := e.st.Get(ctx, repository.SnapshotsPrefix+snap.ID)
	_ = e.st.Put(ctx, repository.SnapshotsPrefix+"7a3f", man)
	if got, err := r.LoadSnapshot(ctx, "7a3f"); !errors.Is(err, keyring.ErrAuth) {
		t.Errorf("a manifest under another name = %v, %v; want ErrAuth", got, err)
	}
	got, err := r.LoadSnapshot(ctx, snap.ID)
	if err != nil || encode(t, got) != want {
		t.Fatalf("LoadSnapshot after the damage was undone = %v", err)
	}
}

// TestPlantedPlaintext: an unencrypted object under a chunk's name in an
// encrypted repository is damage, never a chunk.
func TestPlantedPlaintext(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	e, r, _ := encryptedEnv(t)
	raw := []byte("planted by someone who can write to the bucket")
	id, err := r.ChunkID(raw)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := chunk.NewSealer(chunk.LevelFastest)
	if err := e.st.Put(ctx, repository.ChunkKey(id), s.Seal(nil, id, raw)); err != nil {
		t.Fatal(err)
	}
	if st, err := r.StatChunk(ctx, id); err != nil || st.State != repository.ChunkDamaged {
		t.Errorf("StatChunk of a planted plaintext object = %+v, %v; want damaged", st, err)
	}
	if _, err := r.GetChunk(ctx, id, nil); !errors.Is(err, chunk.ErrCorrupt) {
		t.Errorf("GetChunk of a planted plaintext object = %v, want ErrCorrupt", err)
	}
}

func TestKeyObjects(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	e, r, _ := encryptedEnv(t)
	keys, err := r.Keys(ctx)
	if err != nil || len(keys) != 2 {
		t.Fatalf("Keys = %d keys, %v; want 2", len(keys), err)
	}
	info, data, err := keyring.WrapPassword(e.keys, []byte("second password"), "ops", 10)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.AddKey(ctx, repository.KeyObject{Info: info, Data: data}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Unlock(ctx, password(t, "second password")); err != nil {
		t.Fatalf("the added key does not open: %v", err)
	}
	for _, k := range keys {
		if err := r.RemoveKey(ctx, k.Info.ID); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.RemoveKey(ctx, info.ID); err == nil || !strings.Contains(err.Error(), "last key") {
		t.Fatalf("removing the last key = %v, want refused", err)
	}
	if _, err := r.Unlock(ctx, password(t, testPassword)); !errors.Is(err, keyring.ErrNoKey) {
		t.Errorf("a removed key still opens: %v", err)
	}
	other, _ := keyring.GenerateKeys("another repository")
	oinfo, odata, _ := keyring.WrapPassword(other, []byte("x"), "", 10)
	if err := r.AddKey(ctx, repository.KeyObject{Info: oinfo, Data: odata}); !errors.Is(err, repository.ErrWrongKey) {
		t.Errorf("AddKey of another repository's key = %v, want ErrWrongKey", err)
	}
}

// TestReplacedConfig: a config replaced by someone who can write to the
// bucket (with a key check of their own keys) makes the real keys refuse
// the repository rather than write to it.
func TestReplacedConfig(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	e, _, _ := encryptedEnv(t)
	other, _ := keyring.GenerateKeys(e.keys.Repository)
	e.rewrite(t, repository.ConfigKey, func(b []byte) []byte {
		var cfg map[string]any
		_ = json.Unmarshal(b, &cfg)
		c := other.Check()
		cfg["key_check"] = hex.EncodeToString(c[:])
		out, _ := json.Marshal(cfg)
		return out
	})
	_, err := repository.Open(ctx, e.st, repository.OpenOptions{Keys: e.keyFunc})
	if !errors.Is(err, repository.ErrWrongKey) {
		t.Fatalf("Open with a replaced config = %v, want ErrWrongKey", err)
	}
}
