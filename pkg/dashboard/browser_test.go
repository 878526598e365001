package dashboard_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bulkbackup/bulkbackup/internal/testenv"
	"github.com/bulkbackup/bulkbackup/pkg/coordinator"
	"github.com/bulkbackup/bulkbackup/pkg/dashboard"
	"github.com/bulkbackup/bulkbackup/pkg/fleet"
	"github.com/bulkbackup/bulkbackup/pkg/queue"
	"github.com/bulkbackup/bulkbackup/pkg/reader"
	"github.com/bulkbackup/bulkbackup/pkg/repository"
	"github.com/bulkbackup/bulkbackup/pkg/store"
	"github.com/bulkbackup/bulkbackup/pkg/store/storeurl"
	"github.com/bulkbackup/bulkbackup/pkg/volgen"
)

// browsers are the names a Chromium goes by, tried in order after
// $BULK_CHROMIUM.
var browsers = []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome", "headless-shell"}

// findBrowser returns a Chromium to drive: $BULK_CHROMIUM, else the first
// of browsers on $PATH. Without one the test is skipped, or fails when
// CI=true.
func findBrowser(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("BULK_CHROMIUM"); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("BULK_CHROMIUM: %v", err)
		}
		return bin
	}
	for _, name := range browsers {
		if bin, err := exec.LookPath(name); err == nil {
			return bin
		}
	}
	testenv.SkipOrFail(t, "no Chromium found (looked for $BULK_CHROMIUM and %v on $PATH); install it with scripts/install-chromium.sh", browsers)
	return ""
}

// newBrowser starts a headless Chromium for the test and returns a context
// for its tab. The flags keep it off the network: without them Chromium
// waits for services it cannot reach.
func newBrowser(t *testing.T, bin string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first action starts the browser; it must not run under a
	// timeout, which would stop the browser with it.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	return ctx
}

// screenshotDir is where screenshots go: $BULK_SCREENSHOTS if set (to keep
// them, as docs/dashboard.png was), else the test's artifact directory.
func screenshotDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("BULK_SCREENSHOTS")
	if dir == "" {
		return t.ArtifactDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// step runs actions under the test's deadline.
func step(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, testDeadline)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, testDeadline)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// until waits for a JavaScript condition in the page.
func until(t *testing.T, ctx context.Context, what, cond string) {
	t.Helper()
	step(t, ctx, "wait for "+what, chromedp.Poll[chromedp.Void](cond,
		chromedp.WithPollingInterval(25*time.Millisecond), chromedp.WithPollingTimeout(testDeadline)))
}

func screenshot(t *testing.T, ctx context.Context, path string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, testDeadline)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// TestBrowser drives the dashboard in a real headless Chromium against a
// whole fleet in this process: log in, start a backup of a known source
// with a click and watch it finish without reloading, cancel a job that
// waits for a reader that never comes, pause and resume a schedule, look at
// a source's charts, check that a hostile path stays text, and take
// screenshots at desktop and phone width.
func TestBrowser(t *testing.T) {
	bin := findBrowser(t)
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	repos := repository.NewCache(func(ctx context.Context, r string, create bool) (store.Store, error) {
		return storeurl.Open(ctx, r, storeurl.Options{Create: create})
	})
	f, err := fleet.Start(t.Context(), fleet.Config{
		Dir: filepath.Join(dir, "nats"), Repos: repos, Compressors: 2,
		Coordinator: coordinator.Config{ProgressInterval: 50 * time.Millisecond, ReaderTimeout: 10 * time.Minute},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Errorf("fleet: %v", err)
		}
	})
	nc, err := f.Connect("test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}

	// A source backed up twice, so the dashboard knows it and charts it.
	const size = 48 << 20
	img := filepath.Join(dir, "disk.img")
	if err := volgen.WriteFile(t.Context(), img, size, volgen.Options{Seed: 3}); err != nil {
		t.Fatal(err)
	}
	source := queue.Endpoint{Host: f.Host(), Path: img}
	for range 2 {
		if ev := submit(t, js, source, repo); ev.State != queue.StateSucceeded {
			t.Fatalf("backup of %s: %s %s", source, ev.State, ev.Error)
		}
	}
	// A backup of a source with a hostile name, which fails at once.
	if ev := submit(t, js, queue.Endpoint{Host: f.Host(), Path: `/tmp/<img src=x onerror=window.pwned=1>`}, repo); ev.State != queue.StateFailed {
		t.Fatalf("backup of a missing path: %s", ev.State)
	}
	// A backup of a host no reader serves: it waits, to be cancelled.
	ghost := uuid.NewString()
	if err := queue.Submit(t.Context(), js, queue.SubjectRequestBackup, &queue.BackupRequest{
		V: 1, JobID: ghost, Source: queue.Endpoint{Host: "ghost", Path: "/dev/sdb"}, Repo: repo,
	}, ghost); err != nil {
		t.Fatal(err)
	}
	// A schedule of host h2, whose reader the test starts only once the
	// browser watches the backup it started: the page must show the job
	// waiting, then follow it to the end by itself.
	later := queue.Endpoint{Host: "h2", Path: img}
	var added queue.Schedule
	if err := call(nc, queue.SubjectAPIScheduleAdd, &queue.ScheduleAddRequest{
		V: 1, Name: "nightly", Source: later, Repo: repo, Cron: "0 3 * * *", Timezone: "Europe/Berlin", ChunkSize: 1 << 20,
	}, &added); err != nil {
		t.Fatal(err)
	}

	dash, err := f.Connect("dashboard")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dash.Close)
	base := serve(t, dash, dashboard.Config{Credentials: dashboard.Credentials{Token: testToken}, Repos: repos})
	shots := screenshotDir(t)
	ctx := newBrowser(t, bin)

	// Viewing needs a login; the login returns to the page asked for.
	step(t, ctx, "log in",
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.ID("secret")),
		chromedp.SendKeys(chromedp.ID("secret"), testToken),
		chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.ID("sources")),
	)
	until(t, ctx, "the live stream", `document.getElementById('live').dataset.state === 'open'`)
	if eval[bool](t, ctx, `document.querySelector('img[src="x"]') !== null || window.pwned === 1`) {
		t.Fatal("the hostile path became markup")
	}

	// Start a backup with a click; its page follows it to the end.
	step(t, ctx, "start a backup",
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`tr[data-source=%q] form.backup button`, later.String()))),
		chromedp.WaitVisible(chromedp.ID("job")),
	)
	jobID := eval[string](t, ctx, `document.getElementById('job').dataset.job`)
	// Record what the page shows as it changes, and mark the document: a
	// reload would lose the mark.
	eval[bool](t, ctx, `(() => {
		const job = document.getElementById('job');
		const show = () => job.dataset.state + ' ' + job.querySelector('.bytes').textContent;
		window.mark = 1;
		window.seen = [show()];
		new MutationObserver(() => {
			if (window.seen[window.seen.length - 1] !== show()) window.seen.push(show());
		}).observe(job, {subtree: true, childList: true, characterData: true, attributes: true});
		return true;
	})()`)
	until(t, ctx, "the job to wait for a reader", `document.getElementById('job').dataset.state === 'running'`)
	rd, err := reader.New(f2(t, f, "reader-h2"), reader.Config{Host: later.Host, Repos: repos, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	runUntilCleanup(t, "reader h2", rd.Run)
	until(t, ctx, "the backup to succeed", `document.getElementById('job').dataset.state === 'succeeded'`)
	seen := eval[[]string](t, ctx, `window.seen`)
	t.Logf("the job page showed: %q", seen)
	if eval[int](t, ctx, `window.mark || 0`) != 1 {
		t.Error("the job page was reloaded; it should update in place")
	}
	if n := eval[int](t, ctx, `Number(document.getElementById('job').dataset.updates || 0)`); n < 1 {
		t.Errorf("the job page got %d live updates, want at least 1", n)
	}
	if first := seen[0]; !strings.HasPrefix(first, "queued ") && !strings.HasPrefix(first, "running ") {
		t.Errorf("the job page started showing %q, want the job queued or running", first)
	}
	if want, last := "succeeded 48.0 MiB of 48.0 MiB", seen[len(seen)-1]; last != want {
		t.Errorf("the job page ended showing %q, want %q", last, want)
	}
	if !eval[bool](t, ctx, `(() => { const p = document.querySelector('#job progress'); return p.value === p.max && p.max > 1; })()`) {
		t.Error("the progress bar is not full")
	}
	var job queue.Job
	if err := call(nc, queue.SubjectAPIJob, &queue.JobRequest{V: 1, JobID: jobID}, &job); err != nil {
		t.Fatal(err)
	}
	if job.State != queue.StateSucceeded || job.Backup.Source != later || job.Backup.Repo != repo || job.Backup.ChunkSize != 1<<20 {
		t.Fatalf("the clicked job: %s of %+v", job.State, job.Backup)
	}
	if shown := eval[string](t, ctx, `document.querySelector('#job .finished').textContent`); shown == "" {
		t.Error("the page shows no finishing time")
	}
	if shown := eval[string](t, ctx, `document.querySelector('#job .snapshot').textContent`); shown != job.SnapshotID {
		t.Errorf("the page shows snapshot %q, the job made %q", shown, job.SnapshotID)
	}
	screenshot(t, ctx, filepath.Join(shots, "dashboard-job.png"))

	// The overview lists the waiting job, the workers and the schedule.
	step(t, ctx, "open the overview",
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`tr[data-job=%q] form.cancel button`, ghost))),
		chromedp.WaitVisible(chromedp.CSS(`#worker-rows tr[data-worker]`)),
		chromedp.WaitVisible(chromedp.ID("schedule-nightly")),
	)
	until(t, ctx, "the live stream", `document.getElementById('live').dataset.state === 'open'`)
	if roles := eval[[]string](t, ctx, `[...document.querySelectorAll('#worker-rows tr')].map(r => r.cells[0].textContent)`); !slices.Contains(roles, queue.RoleCompressor) ||
		!slices.Contains(roles, queue.RoleReader) {
		t.Errorf("workers listed: %q, want compressors and readers", roles)
	}
	screenshot(t, ctx, filepath.Join(shots, "dashboard.png"))
	// The worker table follows the heartbeats: the rows are replaced.
	eval[bool](t, ctx, `(document.querySelector('#worker-rows tr').dataset.old = '1') === '1'`)
	until(t, ctx, "a live worker list", `!document.querySelector('#worker-rows tr[data-old]') && document.querySelectorAll('#worker-rows tr[data-worker]').length >= 2`)

	// Cancel the waiting job.
	step(t, ctx, "cancel a job",
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`tr[data-job=%q] form.cancel button`, ghost))),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#job[data-job=%q]`, ghost))),
	)
	until(t, ctx, "the job to be cancelled", `document.getElementById('job').dataset.state === 'cancelled'`)
	if err := call(nc, queue.SubjectAPIJob, &queue.JobRequest{V: 1, JobID: ghost}, &job); err != nil || job.State != queue.StateCancelled {
		t.Errorf("the cancelled job: %s (%v)", job.State, err)
	}

	// Pause and resume the schedule.
	for _, paused := range []bool{true, false} {
		step(t, ctx, "pause or resume the schedule",
			chromedp.Navigate(base+"/"),
			chromedp.Click(chromedp.CSS(`#schedule-nightly form button`)),
			chromedp.WaitVisible(chromedp.CSS(`#schedule-nightly[data-paused="`+strconv.FormatBool(paused)+`"]`)),
		)
		var s queue.Schedule
		if err := call(nc, queue.SubjectAPIScheduleGet, &queue.ScheduleRequest{V: 1, Name: "nightly"}, &s); err != nil || s.Paused != paused {
			t.Errorf("schedule paused %v (%v), want %v", s.Paused, err, paused)
		}
	}

	// The source's history: two successful runs on each chart.
	step(t, ctx, "open the history",
		chromedp.Navigate(base+"/history?source="+url.QueryEscape(source.String())),
		chromedp.WaitVisible(chromedp.CSS(`figure.chart svg`)),
	)
	if dots := eval[int](t, ctx, `document.querySelectorAll('figure.chart')[0].querySelectorAll('circle').length`); dots != 2 {
		t.Errorf("the duration chart has %d points, want 2", dots)
	}
	screenshot(t, ctx, filepath.Join(shots, "dashboard-history.png"))

	// The repository's snapshots.
	step(t, ctx, "open the snapshots",
		chromedp.Navigate(base+"/snapshots?repo="+url.QueryEscape(repo)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-snapshot]`)),
	)
	if n := eval[int](t, ctx, `document.querySelectorAll('tr[data-snapshot]').length`); n != 3 {
		t.Errorf("%d snapshots listed, want 3", n)
	}

	// A phone: nothing wider than the screen.
	step(t, ctx, "a phone-width screen",
		chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile),
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.ID("sources")),
	)
	if w := eval[[]int](t, ctx, `[document.documentElement.scrollWidth, window.innerWidth]`); w[0] > w[1] {
		t.Errorf("at phone width the page is %d px wide on a %d px screen", w[0], w[1])
	}
	screenshot(t, ctx, filepath.Join(shots, "dashboard-phone.png"))
}

// submit requests a backup of src into repo and waits for its end.
func submit(t *testing.T, js jetstream.JetStream, src queue.Endpoint, repo string) *queue.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*testDeadline)
	defer cancel()
	id := uuid.NewString()
	req := &queue.BackupRequest{V: 1, JobID: id, Source: src, Repo: repo, ChunkSize: 1 << 20}
	if err := queue.Submit(ctx, js, queue.SubjectRequestBackup, req, id); err != nil {
		t.Fatal(err)
	}
	ev, err := queue.Follow(ctx, js, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// f2 connects to the fleet's server and closes the connection when the
// test ends.
func f2(t *testing.T, f *fleet.Fleet, name string) *nats.Conn {
	t.Helper()
	nc, err := f.Connect(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// call calls the coordinator's API on nc.
func call(nc *nats.Conn, subject string, req, reply any) error {
	return request(&bundle{nc: nc}, subject, req, reply)
}
