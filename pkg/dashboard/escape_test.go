package dashboard_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/coordinator"
	"github.com/bulkbackup/bulkbackup/pkg/dashboard"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
)

// Hostile values a job record can carry: a source path, a repository, an
// error and warnings are the user's or the file system's text.
const (
	hostilePath  = `/srv/<script>alert("path")</script>/"><img src=x onerror=alert(1)>`
	hostileRepo  = `/repo/<b onmouseover=alert(2)>bold</b>'"`
	hostileError = `open /srv/<script>alert("err")</script>: key AKIA-SECRET-VALUE-42 refused`
	hostileWarn  = `<iframe src=javascript:alert(3)>: changed while read`
	secretValue  = "AKIA-SECRET-VALUE-42"
)

// rawMarkup is what must never appear in a page: any of it would run or
// inject markup.
var rawMarkup = []string{"<script>alert", "<img src=x", "<b onmouseover", "<iframe", secretValue, testToken}

func TestEscaping(t *testing.T) {
	now := time.Now().UTC()
	b := setup(t, coordinator.Config{}, queue.Job{
		V: 1, ID: "hostile-1", Kind: queue.KindBackup, State: queue.StateFailed, Error: hostileError,
		Warnings: []string{hostileWarn}, Created: now, Started: now, Finished: now.Add(time.Second),
		Backup: &queue.BackupRequest{V: 1, Source: queue.Endpoint{Host: "h1", Path: hostilePath}, Repo: hostileRepo},
	})
	c := newClient(t, serve(t, b.nc, dashboard.Config{
		Credentials: dashboard.Credentials{Token: testToken}, Repos: b.repos, Redact: []string{secretValue},
	}))
	c.mustLogin()
	src := "h1:" + hostilePath

	tests := []struct {
		name       string
		path       string
		wantStatus int
		want       []string // escaped forms that must be there
	}{
		{
			name: "overview", path: "/", wantStatus: http.StatusOK,
			want: []string{"&lt;script&gt;alert(&#34;path&#34;)", "&lt;b onmouseover=alert(2)&gt;bold", "&lt;script&gt;alert(&#34;err&#34;)",
				// The history link carries the path query-escaped.
				`href="/history?source=h1%3a%2fsrv%2f%3cscript%3e`},
		},
		{
			name: "job", path: "/jobs/hostile-1", wantStatus: http.StatusOK,
			want: []string{"&lt;script&gt;alert(&#34;path&#34;)", "&lt;iframe src=javascript:alert(3)&gt;", "[redacted]"},
		},
		{
			name: "history", path: "/history?source=" + url.QueryEscape(src), wantStatus: http.StatusOK,
			want: []string{"History of h1:/srv/&lt;script&gt;", "&lt;script&gt;alert(&#34;err&#34;)"},
		},
		{
			name: "snapshots of a hostile repository", path: "/snapshots?repo=" + url.QueryEscape(hostileRepo), wantStatus: http.StatusOK,
			want: []string{"Snapshots in /repo/&lt;b onmouseover=alert(2)&gt;", "could not be read"},
		},
		{
			name: "a hostile source that is no source", path: "/history?source=" + url.QueryEscape(`<script>alert(4)</script>`),
			wantStatus: http.StatusBadRequest, want: []string{"&lt;script&gt;alert(4)"},
		},
		{
			name: "an unknown repository is not opened", path: "/snapshots?repo=" + url.QueryEscape("/etc"),
			wantStatus: http.StatusNotFound, want: []string{"No job or schedule"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := c.get(tt.path)
			if r.status != tt.wantStatus {
				t.Fatalf("status %d, want %d\n%s", r.status, tt.wantStatus, r.body)
			}
			for _, bad := range rawMarkup {
				if strings.Contains(r.body, bad) {
					t.Errorf("the page holds %q:\n%s", bad, r.body)
				}
			}
			for _, want := range tt.want {
				if !strings.Contains(r.body, want) {
					t.Errorf("the page lacks %q:\n%s", want, r.body)
				}
			}
		})
	}

	t.Run("live event", func(t *testing.T) {
		data := c.firstEvent("/events?job=hostile-1")
		if strings.ContainsAny(data, "<>") || strings.Contains(data, secretValue) {
			t.Errorf("event data %s holds markup or the secret", data)
		}
		if !strings.Contains(data, `\u003cscript\u003ealert(\"err\")`) || !strings.Contains(data, "[redacted]") {
			t.Errorf("event data %s lacks the escaped, redacted error", data)
		}
	})
}
