package dashboard_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bulkbackup/bulkbackup/pkg/broker"
	"github.com/bulkbackup/bulkbackup/pkg/coordinator"
	"github.com/bulkbackup/bulkbackup/pkg/dashboard"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/store"
	"github.com/bulkbackup/bulkbackup/pkg/store/storeurl"
)

const (
	testToken    = "token-for-tests-0123456789"
	testDeadline = time.Minute // bound on any single wait
)

// bundle is a real coordinator on an embedded NATS server (no readers or
// compressors) with a client connection.
type bundle struct {
	broker *broker.Broker
	nc     *nats.Conn
	js     jetstream.JetStream
	repos  *repository.Cache
}

// setup starts the server, writes seed as job records, and starts a
// coordinator serving its API. Seeded jobs should be final (a coordinator
// resumes the others).
func setup(t *testing.T, cfg coordinator.Config, seed ...queue.Job) *bundle {
	t.Helper()
	b, err := broker.Start(broker.Config{StoreDir: t.TempDir(), InProcessOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	bb := &bundle{broker: b, repos: repository.NewCache(func(ctx context.Context, repo string, create bool) (store.Store, error) {
		return storeurl.Open(ctx, repo, storeurl.Options{Create: create})
	}, repository.OpenOptions{CreatePlaintext: true})}
	bb.nc = bb.connect(t, "client")
	if bb.js, err = jetstream.New(bb.nc); err != nil {
		t.Fatal(err)
	}
	if len(seed) > 0 {
		if err := queue.Setup(t.Context(), bb.js, queue.StreamConfig{}); err != nil {
			t.Fatal(err)
		}
		kv, err := bb.js.KeyValue(t.Context(), queue.BucketJobs)
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range seed {
			if _, err := kv.Put(t.Context(), j.ID, queue.Encode(&j)); err != nil {
				t.Fatal(err)
			}
		}
	}
	cfg.Repos = bb.repos
	c, err := coordinator.New(bb.connect(t, "coordinator"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	runUntilCleanup(t, "coordinator", c.Run)
	waitFor(t, "the coordinator's API", func() bool {
		_, err := bb.nc.Request(queue.SubjectAPIJobs, queue.Encode(&queue.JobsRequest{V: queue.MessageVersion}), time.Second)
		return err == nil
	})
	return bb
}

func (b *bundle) connect(t *testing.T, name string) *nats.Conn {
	t.Helper()
	nc, err := b.broker.Connect(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// serve starts a dashboard on 127.0.0.1 and returns its base URL.
func serve(t *testing.T, nc *nats.Conn, cfg dashboard.Config) string {
	t.Helper()
	d, err := dashboard.New(nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	runUntilCleanup(t, "dashboard", func(ctx context.Context) error { return d.Serve(ctx, ln) })
	return "http://" + ln.Addr().String()
}

// runUntilCleanup runs fn until the test ends, then cancels it and checks
// that it returned nil.
func runUntilCleanup(t *testing.T, name string, fn func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
		case <-time.After(testDeadline):
			t.Errorf("%s did not stop", name)
		}
	})
}

// waitFor polls cond until it holds or testDeadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testDeadline)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		select {
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// client is a browser without a script: a cookie jar, redirects not
// followed, so tests see them.
type client struct {
	t    *testing.T
	base string
	http *http.Client
}

func newClient(t *testing.T, base string) *client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &client{t: t, base: base, http: &http.Client{
		Jar: jar, Timeout: testDeadline,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// response is what a request got.
type response struct {
	status   int
	body     string
	location string
	header   http.Header
}

func (c *client) do(req *http.Request) response {
	c.t.Helper()
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return response{status: resp.StatusCode, body: string(body), location: resp.Header.Get("Location"), header: resp.Header}
}

func (c *client) get(path string) response {
	c.t.Helper()
	req, err := http.NewRequestWithContext(c.t.Context(), http.MethodGet, c.base+path, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	return c.do(req)
}

// post posts form to path with the extra headers (name, value pairs).
func (c *client) post(path string, form url.Values, headers ...string) response {
	c.t.Helper()
	req, err := http.NewRequestWithContext(c.t.Context(), http.MethodPost, c.base+path, strings.NewReader(form.Encode()))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return c.do(req)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf returns the first form token in a page.
func csrf(t *testing.T, body string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no form token in the page:\n%s", body)
	}
	return m[1]
}

// login logs in with user and secret and returns the response to the
// login's post.
func (c *client) login(user, secret string) response {
	c.t.Helper()
	page := c.get("/login")
	if page.status != http.StatusOK {
		c.t.Fatalf("GET /login: %d", page.status)
	}
	return c.post("/login", url.Values{"csrf": {csrf(c.t, page.body)}, "user": {user}, "secret": {secret}})
}

// mustLogin logs in with the test token and returns the session's form
// token.
func (c *client) mustLogin() string {
	c.t.Helper()
	if r := c.login("", testToken); r.status != http.StatusSeeOther {
		c.t.Fatalf("login: %d\n%s", r.status, r.body)
	}
	return csrf(c.t, c.get("/").body)
}

// firstEvent reads /events?job=id until the first job event and returns
// its data line.
func (c *client) firstEvent(path string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.t.Context(), testDeadline)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		c.t.Fatalf("GET %s: %d", path, resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	event := ""
	for sc.Scan() {
		line := sc.Text()
		if name, ok := strings.CutPrefix(line, "event: "); ok {
			event = name
		}
		if data, ok := strings.CutPrefix(line, "data: "); ok && event == "job" {
			return data
		}
	}
	c.t.Fatalf("GET %s: no job event (%v)", path, sc.Err())
	return ""
}
