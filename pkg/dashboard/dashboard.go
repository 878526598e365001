package dashboard

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bulkbackup/bulkbackup/pkg/repository"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Config configures a Dashboard. Zero durations and counts take the
// defaults named on each field.
type Config struct {
	// Credentials are the login; without them nobody can log in, so
	// nothing can be done and, unless PublicRead, nothing seen.
	Credentials Credentials
	// PublicRead lets anyone who reaches the dashboard view it without
	// logging in. Actions always need a login.
	PublicRead bool
	// Repos opens repositories for the snapshot pages; nil hides them.
	Repos *repository.Cache
	// Redact lists secret values (S3 keys, NATS passwords) that must never
	// reach a page, in case an error message quotes one. The credentials
	// are always redacted.
	Redact []string
	// Logger receives logins, actions and failures; nil discards them.
	Logger *slog.Logger
	// Clock tells the time of sessions and login limits; nil is time.Now.
	Clock func() time.Time
	// SessionTTL is how long a login lasts; 12h.
	SessionTTL time.Duration
	// RequestTimeout bounds each request to the coordinator; 10s.
	RequestTimeout time.Duration
	// MaxStreams bounds the browsers following live updates at once; 256.
	MaxStreams int
	// LoginAttempts failed logins from one address within LoginWindow
	// (5m) lock that address out for the rest of the window; 10.
	LoginAttempts int
	LoginWindow   time.Duration
}

func (c *Config) validate() error {
	if err := c.Credentials.check(); err != nil {
		return fmt.Errorf("dashboard: credentials: %w", err)
	}
	if !c.Credentials.Enabled() && !c.PublicRead {
		return fmt.Errorf("dashboard: no credentials (set %s, or %s and %s, or a credentials file) and no public read: nobody could use it",
			EnvToken, EnvUser, EnvPassword)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	c.SessionTTL = cmpOr(c.SessionTTL, 12*time.Hour)
	c.RequestTimeout = cmpOr(c.RequestTimeout, 10*time.Second)
	c.MaxStreams = cmpOr(c.MaxStreams, 256)
	c.LoginAttempts = cmpOr(c.LoginAttempts, 10)
	c.LoginWindow = cmpOr(c.LoginWindow, 5*time.Minute)
	if c.SessionTTL < 0 || c.RequestTimeout < 0 || c.MaxStreams < 0 || c.LoginAttempts < 0 || c.LoginWindow < 0 {
		return errors.New("dashboard: durations and counts must be positive")
	}
	return nil
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Dashboard is the web dashboard of one fleet. Its handler is safe for
// concurrent use; Serve (or Run) feeds its live updates.
type Dashboard struct {
	cfg      Config
	logger   *slog.Logger
	nc       *nats.Conn
	api      *api
	hub      *hub
	sessions *sessions
	limiter  *limiter
	redact   *redactor
	pages    map[string]*template.Template
	assets   map[string]string // file name -> versioned URL
	static   http.Handler
}

// New returns a dashboard that reads the fleet through nc (the
// coordinator's connection will do): the coordinator's API, the request
// stream and the job events, as any client of the fleet would.
func New(nc *nats.Conn, cfg Config) (*Dashboard, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	logger := cfg.Logger.With("component", "dashboard")
	d := &Dashboard{
		cfg: cfg, logger: logger, nc: nc,
		api:      &api{nc: nc, js: js, timeout: cfg.RequestTimeout},
		hub:      newHub(cfg.MaxStreams, logger),
		sessions: newSessions(cfg.SessionTTL, 10000, cfg.Clock),
		limiter:  newLimiter(cfg.LoginAttempts, cfg.LoginWindow, cfg.Clock),
		redact:   newRedactor(append([]string{cfg.Credentials.Token, cfg.Credentials.Password}, cfg.Redact...)),
	}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	if d.assets, err = assetURLs(static); err != nil {
		return nil, err
	}
	d.static = http.StripPrefix("/static/", cacheFor(24*time.Hour, http.FileServerFS(static)))
	funcs := template.FuncMap{"asset": func(name string) string { return d.assets[name] }, "dict": dict}
	if d.pages, err = parsePages(funcs); err != nil {
		return nil, err
	}
	return d, nil
}

// assetURLs names each static file with a hash of its content, so a
// browser may cache it and still gets a new one after an upgrade.
func assetURLs(static fs.FS) (map[string]string, error) {
	urls := make(map[string]string)
	err := fs.WalkDir(static, ".", func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		data, err := fs.ReadFile(static, path)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		urls[path] = "/static/" + path + "?v=" + hex.EncodeToString(sum[:6])
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dashboard: static files: %w", err)
	}
	return urls, nil
}

func cacheFor(d time.Duration, h http.Handler) http.Handler {
	value := fmt.Sprintf("public, max-age=%d", int(d.Seconds()))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", value)
		h.ServeHTTP(w, r)
	})
}

// dict makes a map of its key and value arguments, so a template can hand
// a part more than one value.
func dict(kv ...any) (map[string]any, error) {
	if len(kv)%2 != 0 {
		return nil, errors.New("dict: odd number of arguments")
	}
	m := make(map[string]any, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		k, ok := kv[i].(string)
		if !ok {
			return nil, fmt.Errorf("dict: key %v is not a string", kv[i])
		}
		m[k] = kv[i+1]
	}
	return m, nil
}

// pageNames are the templates in templates/, each rendered inside
// layout.html.
var pageNames = []string{"overview", "job", "history", "snapshots", "login", "error"}

func parsePages(funcs template.FuncMap) (map[string]*template.Template, error) {
	pages := make(map[string]*template.Template)
	for _, name := range pageNames {
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFS,
			"templates/layout.html", "templates/parts.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("dashboard: template %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

// Handler returns the dashboard's HTTP handler. Its live updates come only
// while Run (or Serve) runs.
func (d *Dashboard) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /static/", d.static)
	mux.HandleFunc("GET /login", d.loginForm)
	mux.HandleFunc("POST /login", d.login)
	mux.HandleFunc("POST /logout", d.action(d.logout))
	mux.HandleFunc("GET /{$}", d.view(d.overview))
	mux.HandleFunc("GET /jobs/{id}", d.view(d.jobPage))
	mux.HandleFunc("GET /history", d.view(d.historyPage))
	mux.HandleFunc("GET /snapshots", d.view(d.snapshotsPage))
	mux.HandleFunc("GET /events", d.view(func(w http.ResponseWriter, r *http.Request, _ *session) { d.handleEvents(w, r) }))
	mux.HandleFunc("POST /actions/backup", d.action(d.startBackup))
	mux.HandleFunc("POST /actions/cancel", d.action(d.cancelJob))
	mux.HandleFunc("POST /actions/pause", d.action(d.pauseSchedule(true)))
	mux.HandleFunc("POST /actions/resume", d.action(d.pauseSchedule(false)))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		d.fail(w, r, nil, http.StatusNotFound, "There is no such page.")
	})
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.logger.WarnContext(r.Context(), "cross-origin request refused", "path", r.URL.Path, "remote", remoteHost(r))
		d.fail(w, r, nil, http.StatusForbidden, "This request came from another site and was refused.")
	}))
	return securityHeaders(cop.Handler(mux))
}

// securityHeaders sets headers that keep pages from being framed, their
// types from being guessed, and scripts from anywhere but the dashboard.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
			"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "same-origin")
		h.ServeHTTP(w, r)
	})
}

// Run feeds the live updates until ctx is done.
func (d *Dashboard) Run(ctx context.Context) error {
	return d.hub.run(ctx, d.nc, d.api.js)
}

// Serve serves the dashboard on ln until ctx is done, then shuts the server
// down (live streams end at once, other requests get a few seconds).
func (d *Dashboard) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	runErr := make(chan error, 1)
	go func() {
		err := d.Run(ctx)
		cancel() // without its live feed the dashboard stops, and says why
		runErr <- err
	}()
	srv := &http.Server{
		Handler:           d.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(d.logger.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	stop := context.AfterFunc(ctx, func() {
		shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutCtx)
	})
	defer stop()
	d.logger.InfoContext(ctx, "serving the dashboard", "addr", ln.Addr().String(),
		"public_read", d.cfg.PublicRead, "login", d.cfg.Credentials.Enabled())
	err := srv.Serve(ln)
	cancel()
	rerr := <-runErr
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	} else if err != nil {
		err = fmt.Errorf("dashboard: serve: %w", err)
	}
	return errors.Join(err, rerr)
}

// page is what every template gets, embedded in its page's data.
type page struct {
	Title string
	// User is who is logged in, "" if nobody.
	User string
	// CSRF is the token every form must carry; "" when not logged in.
	CSRF string
	// LoginEnabled says whether anyone can log in at all.
	LoginEnabled bool
	// Events is the live stream this page follows, "" for none.
	Events string
	// Here is the page's path, where a login returns to.
	Here string
	// Nav names the section the page belongs to.
	Nav string
}

func (p *page) base() *page { return p }

type pageData interface{ base() *page }

// render writes template name with data.
func (d *Dashboard) render(w http.ResponseWriter, r *http.Request, ss *session, status int, name string, data pageData) {
	p := data.base()
	if ss != nil {
		p.User, p.CSRF = ss.user, ss.csrf
	}
	p.LoginEnabled = d.cfg.Credentials.Enabled()
	p.Here = "/"
	if r.Method == http.MethodGet {
		p.Here = r.URL.RequestURI()
	}
	var buf bytes.Buffer
	if err := d.pages[name].ExecuteTemplate(&buf, "layout", data); err != nil {
		d.logger.ErrorContext(r.Context(), "render page", "page", name, "err", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(d.redact.bytes(buf.Bytes()))
}

// errorData is the error page's.
type errorData struct {
	page
	Status  int
	Message string
	Detail  string
}

// fail renders the error page; detail, if not nil, is shown below message.
func (d *Dashboard) fail(w http.ResponseWriter, r *http.Request, ss *session, status int, message string, detail ...error) {
	data := &errorData{page: page{Title: http.StatusText(status)}, Status: status, Message: message}
	if err := errors.Join(detail...); err != nil {
		data.Detail = err.Error()
	}
	d.render(w, r, ss, status, "error", data)
}

// session returns the request's live session, or nil.
func (d *Dashboard) session(r *http.Request) *session {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil
	}
	return d.sessions.get(c.Value)
}

// view wraps a page: without PublicRead it needs a login.
func (d *Dashboard) view(h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ss := d.session(r)
		if ss == nil && !d.cfg.PublicRead {
			if r.URL.Path == "/events" {
				http.Error(w, "log in first", http.StatusUnauthorized)
				return
			}
			http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		h(w, r, ss)
	}
}

// maxForm bounds a posted form.
const maxForm = 64 << 10

// action wraps a state-changing request: it needs a login and the
// session's CSRF token in the form (cross-origin requests were refused
// before, by http.CrossOriginProtection).
func (d *Dashboard) action(h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxForm)
		ss := d.session(r)
		if ss == nil {
			d.fail(w, r, nil, http.StatusForbidden, "Log in to do that.")
			return
		}
		if err := r.ParseForm(); err != nil {
			d.fail(w, r, ss, http.StatusBadRequest, "The form could not be read.", err)
			return
		}
		if !sameToken(r.PostForm.Get(csrfField), ss.csrf) {
			d.logger.WarnContext(r.Context(), "form without a valid CSRF token refused", "path", r.URL.Path, "user", ss.user, "remote", remoteHost(r))
			d.fail(w, r, ss, http.StatusForbidden, "The form is out of date or did not come from this dashboard. Reload the page and try again.")
			return
		}
		h(w, r, ss)
	}
}
