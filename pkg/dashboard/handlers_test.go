package dashboard_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/coordinator"
	"github.com/bulkbackup/bulkbackup/pkg/dashboard"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
)

func TestLoadCredentials(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tokenFile := file("token.yaml", "token: "+testToken+"\n", 0o600)
	userFile := file("user.yaml", "user: ops\npassword: correct horse\n", 0o600)
	openFile := file("open.yaml", "token: "+testToken+"\n", 0o644)
	tests := []struct {
		name     string
		file     string
		env      map[string]string
		want     dashboard.Credentials
		wantErr  string // a part of the error; "" for none
		wantWarn bool
	}{
		{name: "nothing", want: dashboard.Credentials{}},
		{name: "token from env", env: map[string]string{dashboard.EnvToken: testToken}, want: dashboard.Credentials{Token: testToken}},
		{
			name: "user from env", env: map[string]string{dashboard.EnvUser: "ops", dashboard.EnvPassword: "pw"},
			want: dashboard.Credentials{User: "ops", Password: "pw"},
		},
		{name: "user without password", env: map[string]string{dashboard.EnvUser: "ops"}, wantErr: "needs a password"},
		{name: "short token", env: map[string]string{dashboard.EnvToken: "abc"}, wantErr: "shorter than 16"},
		{
			name: "token and user", env: map[string]string{dashboard.EnvToken: testToken, dashboard.EnvUser: "ops", dashboard.EnvPassword: "pw"},
			wantErr: "not both",
		},
		{name: "token file", file: tokenFile, want: dashboard.Credentials{Token: testToken}},
		{name: "user file", file: userFile, want: dashboard.Credentials{User: "ops", Password: "correct horse"}},
		{name: "file and env", file: tokenFile, env: map[string]string{dashboard.EnvToken: testToken}, wantErr: "use one"},
		{name: "missing file", file: filepath.Join(dir, "none.yaml"), wantErr: "no such file"},
		{name: "unknown key", file: file("typo.yaml", "tokn: x\n", 0o600), wantErr: "tokn"},
		{name: "empty file", file: file("empty.yaml", "user: \n", 0o600), wantErr: "no token and no user"},
		{name: "file readable by others", file: openFile, want: dashboard.Credentials{Token: testToken}, wantWarn: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			warned := false
			got, err := dashboard.LoadCredentials(tt.file, func(k string) string { return tt.env[k] }, func(string) { warned = true })
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("error %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error %v, want one saying %q", err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), testToken) {
				t.Errorf("the error quotes the token: %v", err)
			}
			if got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
			if printed := fmt.Sprintf("%v %+v %#v %s", got, got, got, got); strings.Contains(printed, testToken) || strings.Contains(printed, "correct horse") {
				t.Errorf("printing the credentials shows the secret: %s", printed)
			}
			if warned != tt.wantWarn {
				t.Errorf("warned %v, want %v", warned, tt.wantWarn)
			}
		})
	}
}

func TestNewRefusesAnUnusableDashboard(t *testing.T) {
	b := setup(t, coordinator.Config{})
	if _, err := dashboard.New(b.nc, dashboard.Config{}); err == nil || !strings.Contains(err.Error(), dashboard.EnvToken) {
		t.Errorf("New with no credentials and no public read: %v, want an error naming %s", err, dashboard.EnvToken)
	}
}

func TestLogin(t *testing.T) {
	b := setup(t, coordinator.Config{})
	tokenURL := serve(t, b.nc, dashboard.Config{Credentials: dashboard.Credentials{Token: testToken}})
	userURL := serve(t, b.nc, dashboard.Config{Credentials: dashboard.Credentials{User: "ops", Password: "correct horse"}})

	tests := []struct {
		name         string
		base         string
		form         url.Values // user and secret; csrf and next are added
		next         string
		noCookie     bool // post without the login form's cookie
		badToken     bool // post with a token not the form's
		wantStatus   int
		wantLocation string
	}{
		{name: "token", base: tokenURL, form: url.Values{"secret": {testToken}}, wantStatus: http.StatusSeeOther, wantLocation: "/"},
		{name: "wrong token", base: tokenURL, form: url.Values{"secret": {testToken + "x"}}, wantStatus: http.StatusUnauthorized},
		{name: "empty token", base: tokenURL, form: url.Values{"secret": {""}}, wantStatus: http.StatusUnauthorized},
		{
			name: "back to where it started", base: tokenURL, form: url.Values{"secret": {testToken}}, next: "/jobs/abc?x=1",
			wantStatus: http.StatusSeeOther, wantLocation: "/jobs/abc?x=1",
		},
		{
			name: "never to another site", base: tokenURL, form: url.Values{"secret": {testToken}}, next: "//evil.example/",
			wantStatus: http.StatusSeeOther, wantLocation: "/",
		},
		{name: "without the login cookie", base: tokenURL, form: url.Values{"secret": {testToken}}, noCookie: true, wantStatus: http.StatusForbidden},
		{name: "with a forged form token", base: tokenURL, form: url.Values{"secret": {testToken}}, badToken: true, wantStatus: http.StatusForbidden},
		{name: "user and password", base: userURL, form: url.Values{"user": {"ops"}, "secret": {"correct horse"}}, wantStatus: http.StatusSeeOther, wantLocation: "/"},
		{name: "wrong password", base: userURL, form: url.Values{"user": {"ops"}, "secret": {"correct"}}, wantStatus: http.StatusUnauthorized},
		{name: "wrong user", base: userURL, form: url.Values{"user": {"root"}, "secret": {"correct horse"}}, wantStatus: http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t, tt.base)
			page := c.get("/login")
			if page.status != http.StatusOK {
				t.Fatalf("GET /login: %d", page.status)
			}
			form := url.Values{"csrf": {csrf(t, page.body)}, "next": {tt.next}}
			for k, v := range tt.form {
				form[k] = v
			}
			if tt.badToken {
				form.Set("csrf", "forged")
			}
			if tt.noCookie {
				c = newClient(t, tt.base)
			}
			r := c.post("/login", form)
			if r.status != tt.wantStatus {
				t.Fatalf("status %d, want %d\n%s", r.status, tt.wantStatus, r.body)
			}
			if r.location != tt.wantLocation {
				t.Errorf("redirect to %q, want %q", r.location, tt.wantLocation)
			}
			// Logged in exactly when the login succeeded.
			home := c.get("/")
			if loggedIn := home.status == http.StatusOK; loggedIn != (tt.wantStatus == http.StatusSeeOther) {
				t.Errorf("GET / after the login: %d", home.status)
			}
			for _, p := range []response{page, r, home} {
				if strings.Contains(p.body, testToken) || strings.Contains(p.body, "correct horse") {
					t.Errorf("a page shows the secret:\n%s", p.body)
				}
			}
		})
	}
}

func TestSessionCookie(t *testing.T) {
	b := setup(t, coordinator.Config{})
	c := newClient(t, serve(t, b.nc, dashboard.Config{Credentials: dashboard.Credentials{Token: testToken}}))
	r := c.login("", testToken)
	var session *http.Cookie
	for _, ck := range (&http.Response{Header: r.header}).Cookies() {
		if ck.Name == "bulk_session" {
			session = ck
		}
	}
	if session == nil {
		t.Fatalf("no session cookie in %v", r.header)
	}
	if !session.HttpOnly || session.SameSite != http.SameSiteLaxMode || session.Path != "/" || len(session.Value) < 40 {
		t.Errorf("session cookie %+v: want HttpOnly, SameSite=Lax, Path=/ and a long random value", session)
	}
	// Logging out ends the session on the server, not only in the browser.
	form := url.Values{"csrf": {csrf(t, c.get("/").body)}}
	if r := c.post("/logout", form); r.status != http.StatusSeeOther {
		t.Fatalf("logout: %d", r.status)
	}
	replay := newClient(t, c.base)
	u, _ := url.Parse(c.base)
	replay.http.Jar.SetCookies(u, []*http.Cookie{{Name: "bulk_session", Value: session.Value}})
	if r := replay.get("/"); r.status != http.StatusSeeOther {
		t.Errorf("GET / with the logged-out session's cookie: %d, want a redirect to the login", r.status)
	}
}

// clock is a settable test clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestLoginLimitAndExpiry(t *testing.T) {
	b := setup(t, coordinator.Config{})
	clk := &clock{now: time.Now()}
	base := serve(t, b.nc, dashboard.Config{
		Credentials: dashboard.Credentials{Token: testToken}, Clock: clk.Now,
		LoginAttempts: 3, LoginWindow: time.Minute, SessionTTL: time.Hour,
	})
	c := newClient(t, base)
	for i := range 3 {
		if r := c.login("", "wrong-"+testToken); r.status != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d", i, r.status)
		}
	}
	if r := c.login("", testToken); r.status != http.StatusTooManyRequests {
		t.Fatalf("the right token after 3 failures: %d, want 429", r.status)
	}
	clk.advance(2 * time.Minute)
	if r := c.login("", testToken); r.status != http.StatusSeeOther {
		t.Fatalf("the right token after the window: %d, want 303", r.status)
	}
	if r := c.get("/"); r.status != http.StatusOK {
		t.Fatalf("GET / logged in: %d", r.status)
	}
	clk.advance(2 * time.Hour)
	if r := c.get("/"); r.status != http.StatusSeeOther || !strings.HasPrefix(r.location, "/login") {
		t.Errorf("GET / after the session expired: %d to %q, want a redirect to the login", r.status, r.location)
	}
}

func TestViewing(t *testing.T) {
	b := setup(t, coordinator.Config{}, queue.Job{
		V: 1, ID: "job-1", Kind: queue.KindBackup, State: queue.StateSucceeded, Created: time.Now(),
		Backup: &queue.BackupRequest{V: 1, Source: queue.Endpoint{Host: "h1", Path: "/data"}, Repo: t.TempDir()},
	})
	creds := dashboard.Credentials{Token: testToken}
	private := serve(t, b.nc, dashboard.Config{Credentials: creds})
	public := serve(t, b.nc, dashboard.Config{Credentials: creds, PublicRead: true})
	publicNoLogin := serve(t, b.nc, dashboard.Config{PublicRead: true})
	// The pages, and whether a logged-in user gets action forms there.
	paths := []struct {
		path    string
		actions bool
	}{{"/", true}, {"/jobs/job-1", false}, {"/history?source=h1:/data", true}, {"/snapshots", false}}

	tests := []struct {
		name       string
		base       string
		login      bool
		wantStatus int
		wantForms  bool // action forms shown
		wantLogin  bool // a "Log in" link shown
	}{
		{name: "private, anonymous", base: private, wantStatus: http.StatusSeeOther},
		{name: "private, logged in", base: private, login: true, wantStatus: http.StatusOK, wantForms: true},
		{name: "public, anonymous", base: public, wantStatus: http.StatusOK, wantLogin: true},
		{name: "public, logged in", base: public, login: true, wantStatus: http.StatusOK, wantForms: true},
		{name: "public without logins", base: publicNoLogin, wantStatus: http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t, tt.base)
			if tt.login {
				c.mustLogin()
			}
			for _, pa := range paths {
				p := pa.path
				r := c.get(p)
				if r.status != tt.wantStatus {
					t.Fatalf("GET %s: %d, want %d", p, r.status, tt.wantStatus)
				}
				if r.status == http.StatusSeeOther {
					if want := "/login?next=" + url.QueryEscape(p); r.location != want {
						t.Errorf("GET %s redirects to %q, want %q", p, r.location, want)
					}
					continue
				}
				if got := strings.Contains(r.body, `action="/actions/`); got != (tt.wantForms && pa.actions) {
					t.Errorf("GET %s shows action forms: %v, want %v", p, got, tt.wantForms && pa.actions)
				}
				if got := strings.Contains(r.body, `id="login-link"`); got != tt.wantLogin {
					t.Errorf("GET %s shows a login link: %v, want %v", p, got, tt.wantLogin)
				}
				if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
					t.Errorf("GET %s: Content-Security-Policy %q", p, csp)
				}
			}
			wantEvents := http.StatusOK
			if tt.wantStatus != http.StatusOK {
				wantEvents = http.StatusUnauthorized
				if r := c.get("/events"); r.status != wantEvents {
					t.Errorf("GET /events: %d, want %d", r.status, wantEvents)
				}
			} else if data := c.firstEvent("/events?job=job-1"); !strings.Contains(data, `"state":"succeeded"`) {
				t.Errorf("first event %s, want the job's state", data)
			}
			if r := c.get("/static/app.js"); r.status != http.StatusOK {
				t.Errorf("GET /static/app.js: %d", r.status)
			}
		})
	}
}

func TestActionsNeedLoginAndCSRF(t *testing.T) {
	b := setup(t, coordinator.Config{})
	var added queue.Schedule
	if err := request(b, queue.SubjectAPIScheduleAdd, &queue.ScheduleAddRequest{
		V: 1, Name: "nightly", Source: queue.Endpoint{Host: "h1", Path: "/data"}, Repo: t.TempDir(), Cron: "0 3 * * *",
	}, &added); err != nil {
		t.Fatal(err)
	}
	base := serve(t, b.nc, dashboard.Config{Credentials: dashboard.Credentials{Token: testToken}})
	user := newClient(t, base)
	token := user.mustLogin()
	other := newClient(t, base)
	otherToken := other.mustLogin()
	anonymous := newClient(t, base)

	paused := func() bool {
		var s queue.Schedule
		if err := request(b, queue.SubjectAPIScheduleGet, &queue.ScheduleRequest{V: 1, Name: "nightly"}, &s); err != nil {
			t.Fatal(err)
		}
		return s.Paused
	}
	tests := []struct {
		name       string
		c          *client
		token      string
		headers    []string
		wantStatus int
	}{
		{name: "anonymous", c: anonymous, token: token, wantStatus: http.StatusForbidden},
		{name: "no form token", c: user, wantStatus: http.StatusForbidden},
		{name: "wrong form token", c: user, token: "x" + token[1:], wantStatus: http.StatusForbidden},
		{name: "another session's token", c: user, token: otherToken, wantStatus: http.StatusForbidden},
		{name: "cross-site", c: user, token: token, headers: []string{"Sec-Fetch-Site", "cross-site"}, wantStatus: http.StatusForbidden},
		{name: "foreign origin", c: user, token: token, headers: []string{"Origin", "http://evil.example"}, wantStatus: http.StatusForbidden},
		{name: "same origin", c: user, token: token, headers: []string{"Sec-Fetch-Site", "same-origin"}, wantStatus: http.StatusSeeOther},
		{name: "no browser headers", c: user, token: token, wantStatus: http.StatusSeeOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := request(b, queue.SubjectAPIScheduleResume, &queue.ScheduleRequest{V: 1, Name: "nightly"}, &queue.Schedule{}); err != nil {
				t.Fatal(err)
			}
			r := tt.c.post("/actions/pause", url.Values{"csrf": {tt.token}, "name": {"nightly"}}, tt.headers...)
			if r.status != tt.wantStatus {
				t.Fatalf("status %d, want %d\n%s", r.status, tt.wantStatus, r.body)
			}
			if got, want := paused(), tt.wantStatus == http.StatusSeeOther; got != want {
				t.Errorf("paused %v, want %v", got, want)
			}
		})
	}

	// Resume through the page, and a state change is never a GET.
	if r := user.post("/actions/resume", url.Values{"csrf": {token}, "name": {"nightly"}}); r.status != http.StatusSeeOther || paused() {
		t.Errorf("resume: %d, paused %v", r.status, paused())
	}
	if r := user.get("/actions/pause?name=nightly&csrf=" + url.QueryEscape(token)); r.status < 400 || paused() {
		t.Errorf("GET /actions/pause: %d, paused %v", r.status, paused())
	}
	if r := user.post("/actions/pause", url.Values{"csrf": {token}, "name": {"nosuch"}}); r.status != http.StatusNotFound {
		t.Errorf("pause of an unknown schedule: %d, want 404", r.status)
	}
}

// request calls the coordinator's API.
func request(b *bundle, subject string, req, reply any) error {
	msg, err := b.nc.Request(subject, queue.Encode(req), testDeadline)
	if err != nil {
		return err
	}
	if desc := msg.Header.Get("Nats-Service-Error"); desc != "" {
		return errors.New(desc)
	}
	return json.Unmarshal(msg.Data, reply)
}

func TestStartAndCancel(t *testing.T) {
	repo := t.TempDir()
	b := setup(t, coordinator.Config{ReaderTimeout: 10 * time.Minute}, queue.Job{
		V: 1, ID: "done-1", Kind: queue.KindBackup, State: queue.StateSucceeded, Created: time.Now(),
		Backup: &queue.BackupRequest{V: 1, Source: queue.Endpoint{Host: "nohost", Path: "/data/disk.img"}, Repo: repo, ChunkSize: 1 << 20, Level: "better",
			Selection: queue.Selection{Exclude: []string{"*.tmp"}}, Labels: queue.Labels{Tags: []string{"nightly"}}},
	})
	c := newClient(t, serve(t, b.nc, dashboard.Config{Credentials: dashboard.Credentials{Token: testToken}}))
	token := c.mustLogin()

	tests := []struct {
		name, source, repo string
		wantStatus         int
	}{
		{name: "unknown source", source: "nohost:/etc/shadow", repo: repo, wantStatus: http.StatusBadRequest},
		{name: "known source, other repository", source: "nohost:/data/disk.img", repo: t.TempDir(), wantStatus: http.StatusBadRequest},
		{name: "not a source", source: "<script>", repo: repo, wantStatus: http.StatusBadRequest},
		{name: "known source", source: "nohost:/data/disk.img", repo: repo, wantStatus: http.StatusSeeOther},
	}
	var started string
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := c.post("/actions/backup", url.Values{"csrf": {token}, "source": {tt.source}, "repo": {tt.repo}})
			if r.status != tt.wantStatus {
				t.Fatalf("status %d, want %d\n%s", r.status, tt.wantStatus, r.body)
			}
			if strings.Contains(r.body, "<script>") {
				t.Errorf("the answer shows the input unescaped:\n%s", r.body)
			}
			if r.status == http.StatusSeeOther {
				started = strings.TrimPrefix(r.location, "/jobs/")
			}
		})
	}
	if started == "" {
		t.Fatal("no backup started")
	}
	// The job is the known source's, with its settings; there is no
	// reader of nohost, so it waits.
	var job queue.Job
	waitFor(t, "the started job to run", func() bool {
		return request(b, queue.SubjectAPIJob, &queue.JobRequest{V: 1, JobID: started}, &job) == nil && job.State == queue.StateRunning
	})
	if job.Backup.ChunkSize != 1<<20 || job.Backup.Level != "better" || job.Backup.Repo != repo ||
		!slices.Equal(job.Backup.Exclude, []string{"*.tmp"}) || !slices.Equal(job.Backup.Tags, []string{"nightly"}) {
		t.Errorf("started %+v, want the settings of the last backup", job.Backup)
	}
	if r := c.get("/jobs/" + started); r.status != http.StatusOK || !strings.Contains(r.body, `action="/actions/cancel"`) {
		t.Fatalf("job page: %d, cancel form shown: %v", r.status, strings.Contains(r.body, `action="/actions/cancel"`))
	}

	if r := c.post("/actions/cancel", url.Values{"csrf": {token}, "job": {started}}); r.status != http.StatusSeeOther || r.location != "/jobs/"+started {
		t.Fatalf("cancel: %d to %q", r.status, r.location)
	}
	waitFor(t, "the job to be cancelled", func() bool {
		return request(b, queue.SubjectAPIJob, &queue.JobRequest{V: 1, JobID: started}, &job) == nil && job.State == queue.StateCancelled
	})
	if r := c.get("/jobs/" + started); strings.Contains(r.body, `action="/actions/cancel"`) {
		t.Error("an ended job's page offers to cancel it")
	}
	if r := c.post("/actions/cancel", url.Values{"csrf": {token}, "job": {"nosuch"}}); r.status != http.StatusNotFound {
		t.Errorf("cancel of an unknown job: %d, want 404", r.status)
	}
}
