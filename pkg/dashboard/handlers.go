package dashboard

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"

	"github.com/google/uuid"

	"github.com/bulkbackup/bulkbackup/pkg/queue"
)

const (
	// listedJobs is how many jobs (newest first) the overview reads: the
	// running ones among them, the recent ones, and the known sources.
	listedJobs = 500
	// recentJobs is how many ended jobs the overview shows, and how many
	// jobs a live stream starts with.
	recentJobs = 20
	// listedSnapshots is how many snapshots (newest first) a repository's
	// page shows.
	listedSnapshots = 500
)

// loginData is the login page's.
type loginData struct {
	page
	AskUser bool
	Next    string
	Token   string // the login form's token
	Problem string
}

// loginForm serves the login page. It sets a fresh login cookie whose
// value the form carries back: a login posted from anywhere else has no
// matching pair (login CSRF).
func (d *Dashboard) loginForm(w http.ResponseWriter, r *http.Request) {
	next := localPath(r.URL.Query().Get("next"))
	if ss := d.session(r); ss != nil {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	d.renderLogin(w, r, http.StatusOK, next, "")
}

func (d *Dashboard) renderLogin(w http.ResponseWriter, r *http.Request, status int, next, problem string) {
	token := randomToken()
	http.SetCookie(w, &http.Cookie{
		Name: loginCookie, Value: token, Path: "/login", MaxAge: 3600,
		HttpOnly: true, Secure: secureRequest(r), SameSite: http.SameSiteStrictMode,
	})
	d.render(w, r, nil, status, "login", &loginData{
		page:    page{Title: "Log in", Nav: "login"},
		AskUser: d.cfg.Credentials.Token == "", Next: next, Token: token, Problem: problem,
	})
}

// login checks a posted login and starts a session.
func (d *Dashboard) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	ctx := r.Context()
	addr := remoteHost(r)
	if !d.cfg.Credentials.Enabled() {
		d.fail(w, r, nil, http.StatusForbidden, "Logging in is not set up on this dashboard.")
		return
	}
	if err := r.ParseForm(); err != nil {
		d.fail(w, r, nil, http.StatusBadRequest, "The form could not be read.", err)
		return
	}
	next := localPath(r.PostForm.Get("next"))
	c, err := r.Cookie(loginCookie)
	if err != nil || !sameToken(r.PostForm.Get(csrfField), c.Value) {
		d.logger.WarnContext(ctx, "login without a valid form token refused", "remote", addr)
		d.renderLogin(w, r, http.StatusForbidden, next, "The login form was out of date. Try again.")
		return
	}
	if !d.limiter.allowed(addr) {
		d.logger.WarnContext(ctx, "login refused: too many failures", "remote", addr)
		d.renderLogin(w, r, http.StatusTooManyRequests, next, "Too many failed logins from your address. Wait a few minutes.")
		return
	}
	user, secret := r.PostForm.Get("user"), r.PostForm.Get("secret")
	if !d.cfg.Credentials.matches(user, secret) {
		d.limiter.failed(addr)
		// Not the user name typed: it is sometimes the password.
		d.logger.WarnContext(ctx, "login failed", "remote", addr)
		d.renderLogin(w, r, http.StatusUnauthorized, next, "Wrong credentials.")
		return
	}
	name := cmp.Or(d.cfg.Credentials.User, "token")
	id, _ := d.sessions.create(name)
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: id, Path: "/", MaxAge: int(d.cfg.SessionTTL.Seconds()),
		HttpOnly: true, Secure: secureRequest(r), SameSite: http.SameSiteLaxMode,
	})
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Path: "/login", MaxAge: -1})
	d.logger.InfoContext(ctx, "logged in", "user", name, "remote", addr)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// logout ends the session.
func (d *Dashboard) logout(w http.ResponseWriter, r *http.Request, ss *session) {
	if c, err := r.Cookie(sessionCookie); err == nil {
		d.sessions.remove(c.Value)
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	d.logger.InfoContext(r.Context(), "logged out", "user", ss.user, "remote", remoteHost(r))
	next := "/login"
	if d.cfg.PublicRead {
		next = "/"
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// overviewData is the overview page's.
type overviewData struct {
	page
	Active    []jobView
	Recent    []jobView
	Workers   []workerView
	Schedules []scheduleView
	Sources   []target
	Repos     []string
	// Problems lists what could not be read.
	Problems []string
}

// overview serves the front page: jobs, workers, schedules, sources and
// repositories.
func (d *Dashboard) overview(w http.ResponseWriter, r *http.Request, ss *session) {
	ctx := r.Context()
	data := &overviewData{page: page{Title: "Fleet", Events: "/events", Nav: "fleet"}}
	problem := func(err error) { data.Problems = append(data.Problems, err.Error()) }

	jobs, err := d.api.jobs(ctx, listedJobs)
	if err != nil {
		problem(err)
	}
	byID := make(map[string]*queue.Job, len(jobs))
	for i := range jobs {
		j := &jobs[i]
		byID[j.ID] = j
		switch {
		case !queue.Final(j.State):
			data.Active = append(data.Active, viewOfJob(j))
		case len(data.Recent) < recentJobs:
			data.Recent = append(data.Recent, viewOfJob(j))
		}
	}
	workers, err := d.api.workers(ctx)
	if err != nil {
		problem(err)
	}
	data.Workers = viewsOfWorkers(workers)
	schedules, err := d.api.schedules(ctx)
	if err != nil {
		problem(err)
	}
	for i := range schedules {
		s := &schedules[i]
		data.Schedules = append(data.Schedules, viewOfSchedule(s, d.jobState(ctx, byID, s.LastJobID)))
	}
	data.Sources = knownTargets(jobs, schedules)
	data.Repos = knownRepos(data.Sources)
	d.render(w, r, ss, http.StatusOK, "overview", data)
}

// jobState returns the state of job id, from byID or else the coordinator;
// "" when unknown.
func (d *Dashboard) jobState(ctx context.Context, byID map[string]*queue.Job, id string) string {
	if id == "" {
		return ""
	}
	if j, ok := byID[id]; ok {
		return j.State
	}
	if j, err := d.api.job(ctx, id); err == nil {
		return j.State
	}
	return ""
}

// jobData is the job page's.
type jobData struct {
	page
	Job jobView
}

// jobPage serves one job with its live progress.
func (d *Dashboard) jobPage(w http.ResponseWriter, r *http.Request, ss *session) {
	id := r.PathValue("id")
	if queue.CheckToken("job", id) != nil {
		d.fail(w, r, ss, http.StatusNotFound, "There is no such job.")
		return
	}
	job, err := d.api.job(r.Context(), id)
	if notFound(err) {
		d.fail(w, r, ss, http.StatusNotFound, "There is no such job.")
		return
	}
	if err != nil {
		d.fail(w, r, ss, http.StatusBadGateway, "The coordinator did not answer.", err)
		return
	}
	d.render(w, r, ss, http.StatusOK, "job", &jobData{
		page: page{Title: "Job " + id, Events: "/events?job=" + url.QueryEscape(id), Nav: "fleet"},
		Job:  viewOfJob(job),
	})
}

// historyData is a source's history page's.
type historyData struct {
	page
	Source  queue.Endpoint
	Targets []target
	Runs    []runView // newest first
	Charts  []chart
}

// historyPage serves every backup of one source (?source=HOST:PATH) with
// charts of duration, size and throughput over time.
func (d *Dashboard) historyPage(w http.ResponseWriter, r *http.Request, ss *session) {
	ctx := r.Context()
	src, err := queue.ParseEndpoint(r.URL.Query().Get("source"))
	if err != nil {
		d.fail(w, r, ss, http.StatusBadRequest, "That is not a source (want HOST:PATH).", err)
		return
	}
	runs, err := d.api.history(ctx, src)
	if err != nil {
		d.fail(w, r, ss, http.StatusBadGateway, "The coordinator did not answer.", err)
		return
	}
	data := &historyData{page: page{Title: "History of " + src.String(), Nav: "fleet"}, Source: src}
	for i := len(runs) - 1; i >= 0; i-- {
		data.Runs = append(data.Runs, viewOfRun(&runs[i]))
	}
	var largest int64
	for _, run := range runs {
		largest = max(largest, run.SourceBytes, run.StoredBytes)
	}
	unit, unitName := byteUnit(largest)
	var dur, size, stored, rate series
	size.Name, stored.Name = "source", "stored"
	for _, run := range runs {
		if run.State != queue.StateSucceeded || run.Started.IsZero() {
			continue
		}
		when := formatTime(run.Started) + ": "
		dur.Points = append(dur.Points, point{T: run.Started, V: run.Seconds, Label: when + formatSeconds(run.Seconds)})
		size.Points = append(size.Points, point{T: run.Started, V: float64(run.SourceBytes) / unit, Label: when + formatBytes(run.SourceBytes) + " read"})
		stored.Points = append(stored.Points, point{T: run.Started, V: float64(run.StoredBytes) / unit, Label: when + formatBytes(run.StoredBytes) + " stored"})
		rate.Points = append(rate.Points, point{T: run.Started, V: run.MBps, Label: when + formatRate(run.MBps)})
	}
	data.Charts = []chart{
		newChart("Duration", func(v float64) string { return cmp.Or(formatSeconds(v), "0s") }, dur),
		newChart("Size", func(v float64) string { return strconv.FormatFloat(v, 'g', 4, 64) + " " + unitName }, size, stored),
		newChart("Throughput", func(v float64) string { return strconv.FormatFloat(v, 'g', 4, 64) + " MB/s" }, rate),
	}
	if jobs, schedules, err := d.knowledge(ctx); err == nil {
		for _, t := range knownTargets(jobs, schedules) {
			if t.Source == src {
				data.Targets = append(data.Targets, t)
			}
		}
	}
	d.render(w, r, ss, http.StatusOK, "history", data)
}

// knowledge reads the jobs and schedules that say which sources and
// repositories the fleet knows.
func (d *Dashboard) knowledge(ctx context.Context) ([]queue.Job, []queue.Schedule, error) {
	jobs, err := d.api.jobs(ctx, listedJobs)
	if err != nil {
		return nil, nil, err
	}
	schedules, err := d.api.schedules(ctx)
	if err != nil {
		return nil, nil, err
	}
	return jobs, schedules, nil
}

// snapshotsData is a repository's page's.
type snapshotsData struct {
	page
	Repo      string
	Repos     []string
	Snapshots []snapshotView // newest first
	Total     int
	// Added is the sum of what each snapshot added to the repository.
	Added   string
	Problem string
}

// snapshotsPage lists the snapshots of one repository (?repo=), from their
// headers, never whole manifests; without ?repo= it lists the known
// repositories. Only repositories that a job or schedule names are
// opened: a viewer cannot make the coordinator open any path it likes.
func (d *Dashboard) snapshotsPage(w http.ResponseWriter, r *http.Request, ss *session) {
	ctx := r.Context()
	data := &snapshotsData{page: page{Title: "Snapshots", Nav: "snapshots"}, Repo: r.URL.Query().Get("repo")}
	jobs, schedules, err := d.knowledge(ctx)
	if err != nil {
		d.fail(w, r, ss, http.StatusBadGateway, "The coordinator did not answer.", err)
		return
	}
	data.Repos = knownRepos(knownTargets(jobs, schedules))
	if data.Repo == "" {
		d.render(w, r, ss, http.StatusOK, "snapshots", data)
		return
	}
	if !slices.Contains(data.Repos, data.Repo) {
		d.fail(w, r, ss, http.StatusNotFound, "No job or schedule of this fleet uses that repository.")
		return
	}
	data.Title = "Snapshots in " + data.Repo
	if d.cfg.Repos == nil {
		data.Problem = "This dashboard cannot open repositories."
		d.render(w, r, ss, http.StatusOK, "snapshots", data)
		return
	}
	openCtx, cancel := context.WithTimeout(ctx, d.cfg.RequestTimeout)
	defer cancel()
	repo, err := d.cfg.Repos.Get(openCtx, data.Repo, false)
	if err == nil {
		snaps, lerr := repo.SnapshotHeaders(openCtx)
		err = lerr
		data.Total = len(snaps)
		var added int64
		for i := len(snaps) - 1; i >= 0; i-- {
			added += snaps[i].Stats.NewBytes
			if len(data.Snapshots) < listedSnapshots {
				data.Snapshots = append(data.Snapshots, viewOfSnapshot(snaps[i]))
			}
		}
		data.Added = formatBytes(added)
	}
	if err != nil {
		data.Problem = "The repository could not be read: " + err.Error()
	}
	d.render(w, r, ss, http.StatusOK, "snapshots", data)
}

// startBackup starts a backup of a known source into its known
// repository, with the settings it was last backed up with.
func (d *Dashboard) startBackup(w http.ResponseWriter, r *http.Request, ss *session) {
	ctx := r.Context()
	src, err := queue.ParseEndpoint(r.PostForm.Get("source"))
	if err != nil {
		d.fail(w, r, ss, http.StatusBadRequest, "That is not a source (want HOST:PATH).", err)
		return
	}
	repo := r.PostForm.Get("repo")
	jobs, schedules, err := d.knowledge(ctx)
	if err != nil {
		d.fail(w, r, ss, http.StatusBadGateway, "The coordinator did not answer.", err)
		return
	}
	targets := knownTargets(jobs, schedules)
	i := slices.IndexFunc(targets, func(t target) bool { return t.Source == src && t.Repo == repo })
	if i < 0 {
		d.fail(w, r, ss, http.StatusBadRequest, "The dashboard backs up only sources into repositories that a job or schedule has used.")
		return
	}
	t := targets[i]
	id := uuid.NewString()
	req := &queue.BackupRequest{
		V: queue.MessageVersion, JobID: id, Source: t.Source, Repo: t.Repo,
		ChunkSize: t.ChunkSize, Level: t.Level, Mode: t.Mode, FilesThreshold: t.FilesThreshold,
		Selection: t.Selection, Labels: t.Labels,
	}
	if err := d.api.submitBackup(ctx, req); err != nil {
		d.fail(w, r, ss, http.StatusBadGateway, "The backup could not be requested.", err)
		return
	}
	d.logger.InfoContext(ctx, "backup requested", "user", ss.user, "job_id", id, "source", src.String(), "repo", repo)
	http.Redirect(w, r, "/jobs/"+id, http.StatusSeeOther)
}

// cancelJob asks the coordinator to cancel a job.
func (d *Dashboard) cancelJob(w http.ResponseWriter, r *http.Request, ss *session) {
	ctx := r.Context()
	id := r.PostForm.Get("job")
	if queue.CheckToken("job", id) != nil {
		d.fail(w, r, ss, http.StatusBadRequest, "That is not a job ID.")
		return
	}
	job, err := d.api.job(ctx, id)
	if notFound(err) {
		d.fail(w, r, ss, http.StatusNotFound, "There is no such job.")
		return
	}
	if err != nil {
		d.fail(w, r, ss, http.StatusBadGateway, "The coordinator did not answer.", err)
		return
	}
	if !queue.Final(job.State) {
		// Through the request stream: the page follows the job's events, so
		// it need not wait, as bulk.api.cancel does, for the job to stop.
		if err := d.api.submit(ctx, queue.SubjectRequestCancel, &queue.CancelRequest{V: queue.MessageVersion, JobID: id}, ""); err != nil {
			d.fail(w, r, ss, http.StatusBadGateway, "The cancellation could not be requested.", err)
			return
		}
		d.logger.InfoContext(ctx, "cancellation requested", "user", ss.user, "job_id", id)
	}
	http.Redirect(w, r, "/jobs/"+id, http.StatusSeeOther)
}

// pauseSchedule returns the handler that pauses (or resumes) a schedule.
func (d *Dashboard) pauseSchedule(pause bool) func(http.ResponseWriter, *http.Request, *session) {
	return func(w http.ResponseWriter, r *http.Request, ss *session) {
		ctx := r.Context()
		name := r.PostForm.Get("name")
		if queue.CheckScheduleName(name) != nil {
			d.fail(w, r, ss, http.StatusBadRequest, "That is not a schedule name.")
			return
		}
		err := d.api.setPaused(ctx, name, pause)
		var ae *apiError
		switch {
		case notFound(err):
			d.fail(w, r, ss, http.StatusNotFound, "There is no such schedule.")
			return
		case errors.As(err, &ae):
			d.fail(w, r, ss, http.StatusBadRequest, "The coordinator refused.", err)
			return
		case err != nil:
			d.fail(w, r, ss, http.StatusBadGateway, "The coordinator did not answer.", err)
			return
		}
		what := "schedule resumed"
		if pause {
			what = "schedule paused"
		}
		d.logger.InfoContext(ctx, what, "user", ss.user, "schedule", name)
		http.Redirect(w, r, "/#schedule-"+name, http.StatusSeeOther)
	}
}
