package forget_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/forget"
	"github.com/bulkbackup/bulkbackup/pkg/manifest"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/retention"
	"github.com/bulkbackup/bulkbackup/pkg/store/dirstore"
)

func newRepo(t *testing.T) *repository.Repository {
	t.Helper()
	st, err := dirstore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	repo, err := repository.Open(t.Context(), st, repository.OpenOptions{CreatePlaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	return repo
}

// save commits an empty volume snapshot of host:path taken at when.
func save(t *testing.T, repo *repository.Repository, id, host, path, when string) {
	t.Helper()
	at, err := time.Parse(time.DateTime, when)
	if err != nil {
		t.Fatal(err)
	}
	s := &manifest.Snapshot{Version: 1, ID: id, Time: at, Host: host, Path: path, Mode: manifest.ModeVolume,
		SourceKind: "file", ChunkSize: 4096, Hash: "sha256", Compression: "zstd", Level: "fastest", Chunks: []manifest.Chunk{}}
	if err := repo.SaveSnapshot(t.Context(), s); err != nil {
		t.Fatal(err)
	}
}

func ids[S ~[]E, E any](list S, id func(E) string) []string {
	out := []string{}
	for _, e := range list {
		out = append(out, id(e))
	}
	return out
}

func keptIDs(ks []retention.Kept) []string {
	return ids(ks, func(k retention.Kept) string { return k.ID })
}
func removedIDs(ss []retention.Snapshot) []string {
	return ids(ss, func(s retention.Snapshot) string { return s.ID })
}

// The snapshots of restic's manual ("Remove a single snapshot"): two of
// kasimir's /home/user/work, one of luigi's /home/art, kazik's /srv and
// luigi's /srv.
func manual(t *testing.T, repo *repository.Repository) {
	t.Helper()
	save(t, repo, "40dc1520", "kasimir", "/home/user/work", "2015-05-08 21:38:30")
	save(t, repo, "79766175", "kasimir", "/home/user/work", "2015-05-08 21:40:19")
	save(t, repo, "bdbd3439", "luigi", "/home/art", "2015-05-08 21:45:17")
	save(t, repo, "590c8fc8", "kazik", "/srv", "2015-05-08 21:47:38")
	save(t, repo, "9f0bc19e", "luigi", "/srv", "2015-05-08 21:46:11")
}

func TestPlanGroupsBySource(t *testing.T) {
	t.Parallel()
	repo := newRepo(t)
	manual(t, repo)
	now := time.Date(2015, 6, 1, 0, 0, 0, 0, time.UTC)
	groups, err := forget.Plan(t.Context(), repo, retention.Policy{Last: 1}, retention.DefaultGroupBy, nil, now)
	if err != nil {
		t.Fatal(err)
	}
	var got [][3]any
	for _, g := range groups {
		got = append(got, [3]any{g.Name(), keptIDs(g.Keep), removedIDs(g.Remove)})
	}
	want := [][3]any{
		{"host kasimir, path /home/user/work", []string{"79766175"}, []string{"40dc1520"}},
		{"host kazik, path /srv", []string{"590c8fc8"}, []string{}},
		{"host luigi, path /home/art", []string{"bdbd3439"}, []string{}},
		{"host luigi, path /srv", []string{"9f0bc19e"}, []string{}},
	}
	if len(got) != len(want) {
		t.Fatalf("groups %v, want %v", got, want)
	}
	for i := range want {
		if got[i][0] != want[i][0] || !slices.Equal(got[i][1].([]string), want[i][1].([]string)) || !slices.Equal(got[i][2].([]string), want[i][2].([]string)) {
			t.Errorf("group %d: %v, want %v", i, got[i], want[i])
		}
	}
}

func TestPlanFilter(t *testing.T) {
	t.Parallel()
	repo := newRepo(t)
	manual(t, repo)
	now := time.Date(2015, 6, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		filter *manifest.Filter
		by     retention.GroupBy
		groups []string
		remove []string
	}{
		{"host", &manifest.Filter{Hosts: []string{"luigi"}}, retention.DefaultGroupBy, []string{"host luigi, path /home/art", "host luigi, path /srv"}, nil},
		{"path", &manifest.Filter{Paths: []string{"/srv"}}, retention.DefaultGroupBy, []string{"host kazik, path /srv", "host luigi, path /srv"}, nil},
		{"path as typed with a slash", &manifest.Filter{Paths: []string{"/srv/"}}, retention.DefaultGroupBy, []string{"host kazik, path /srv", "host luigi, path /srv"}, nil},
		{"host and path", &manifest.Filter{Hosts: []string{"kasimir"}, Paths: []string{"/home/user/work"}}, retention.DefaultGroupBy,
			[]string{"host kasimir, path /home/user/work"}, []string{"40dc1520"}},
		// Grouped by path only, luigi's and kazik's /srv are one group:
		// the newest of the two stays.
		{"by path", &manifest.Filter{Paths: []string{"/srv"}}, retention.GroupBy{Path: true}, []string{"path /srv"}, []string{"9f0bc19e"}},
		{"nothing selected", &manifest.Filter{Hosts: []string{"nobody"}}, retention.DefaultGroupBy, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			groups, err := forget.Plan(t.Context(), repo, retention.Policy{Last: 1}, tt.by, tt.filter, now)
			if err != nil {
				t.Fatal(err)
			}
			var names, remove []string
			for _, g := range groups {
				names = append(names, g.Name())
				remove = append(remove, removedIDs(g.Remove)...)
			}
			if !slices.Equal(names, tt.groups) || !slices.Equal(remove, tt.remove) {
				t.Errorf("groups %q removing %q, want %q removing %q", names, remove, tt.groups, tt.remove)
			}
		})
	}
}

func TestPlanRefusesAnEmptyPolicy(t *testing.T) {
	t.Parallel()
	repo := newRepo(t)
	manual(t, repo)
	if _, err := forget.Plan(t.Context(), repo, retention.Policy{}, retention.DefaultGroupBy, nil, time.Now()); !errors.Is(err, retention.ErrEmptyPolicy) {
		t.Errorf("Plan with the empty policy: %v, want %v", err, retention.ErrEmptyPolicy)
	}
}

func TestRemove(t *testing.T) {
	t.Parallel()
	repo := newRepo(t)
	manual(t, repo)
	now := time.Date(2015, 6, 1, 0, 0, 0, 0, time.UTC)
	groups, err := forget.Plan(t.Context(), repo, retention.Policy{Last: 1}, retention.GroupBy{}, nil, now)
	if err != nil {
		t.Fatal(err)
	}
	// Forgotten meanwhile (by another forget): still counts as forgotten.
	if err := repo.ForgetSnapshot(t.Context(), "bdbd3439"); err != nil {
		t.Fatal(err)
	}
	done, err := forget.Remove(t.Context(), repo, groups)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"9f0bc19e", "bdbd3439", "79766175", "40dc1520"}
	if !slices.Equal(done, want) {
		t.Errorf("forgot %q, want %q", done, want)
	}
	left, err := repo.SnapshotIDs(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(left, []string{"590c8fc8"}) {
		t.Errorf("left %q, want only the newest, 590c8fc8", left)
	}
	// Their headers go too: nothing lists them.
	heads, err := repo.SnapshotHeaders(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(heads) != 1 {
		t.Errorf("%d headers left, want 1", len(heads))
	}
}
