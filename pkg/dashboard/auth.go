package dashboard

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"
)

// Credentials are what a person logs in with: a token, or a user name and
// password. The zero value allows no login at all.
type Credentials struct {
	// Token, when set, is the one secret a login form asks for.
	Token string `yaml:"token"`
	// User and Password, when set (both), are asked for instead.
	User     string `yaml:"user"`
	Password string `yaml:"password"`
}

// String describes c without its secret, so logging or printing a
// Credentials shows what kind of login it is and nothing more.
func (c Credentials) String() string {
	switch {
	case c.Token != "":
		return "token login"
	case c.Password != "":
		return "login as " + c.User
	}
	return "no login"
}

// GoString is String, for %#v.
func (c Credentials) GoString() string { return c.String() }

// LogValue is String, for log/slog.
func (c Credentials) LogValue() slog.Value { return slog.StringValue(c.String()) }

// Enabled reports whether anyone can log in.
func (c Credentials) Enabled() bool { return c.Token != "" || c.Password != "" }

// check validates c: a token or a user with a password, not both.
func (c Credentials) check() error {
	switch {
	case c.Token != "" && (c.User != "" || c.Password != ""):
		return errors.New("give a token or a user and password, not both")
	case (c.User == "") != (c.Password == ""):
		return errors.New("a user needs a password and a password a user")
	case c.Token != "" && len(c.Token) < 16:
		return errors.New("the token is shorter than 16 characters")
	}
	return nil
}

// Environment variables that hold credentials. They are read only from
// the environment or a file (LoadCredentials), never from flags, so the
// secret does not show in the process list.
const (
	EnvToken    = "BULK_DASHBOARD_TOKEN"
	EnvUser     = "BULK_DASHBOARD_USER"
	EnvPassword = "BULK_DASHBOARD_PASSWORD"
)

// LoadCredentials reads the dashboard's credentials from file, if one is
// named, or else from the environment (getenv: EnvToken, or EnvUser and
// EnvPassword). The file is YAML with the keys "token", or "user" and
// "password". Setting both a file and the variables is an error, as is a
// file readable by others than its owner, which warn receives instead
// when it is not nil (a mounted Kubernetes secret often is).
func LoadCredentials(file string, getenv func(string) string, warn func(string)) (Credentials, error) {
	env := Credentials{Token: getenv(EnvToken), User: getenv(EnvUser), Password: getenv(EnvPassword)}
	if file == "" {
		if err := env.check(); err != nil {
			return Credentials{}, fmt.Errorf("dashboard credentials from %s, %s and %s: %w", EnvToken, EnvUser, EnvPassword, err)
		}
		return env, nil
	}
	if env != (Credentials{}) {
		return Credentials{}, fmt.Errorf("dashboard credentials: both a file (%s) and %s/%s/%s are set; use one", file, EnvToken, EnvUser, EnvPassword)
	}
	fi, err := os.Stat(file)
	if err != nil {
		return Credentials{}, fmt.Errorf("dashboard credentials: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 && warn != nil {
		warn(fmt.Sprintf("dashboard credentials file %s is readable by others (mode %v); chmod 600 it", file, fi.Mode().Perm()))
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return Credentials{}, fmt.Errorf("dashboard credentials: %w", err)
	}
	var c Credentials
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return Credentials{}, fmt.Errorf("dashboard credentials %s: %w", file, err) // yaml errors quote lines, not values
	}
	if err := c.check(); err != nil {
		return Credentials{}, fmt.Errorf("dashboard credentials %s: %w", file, err)
	}
	if !c.Enabled() {
		return Credentials{}, fmt.Errorf("dashboard credentials %s: no token and no user", file)
	}
	return c, nil
}

// matches reports, in constant time, whether a login's user and secret are
// the credentials'. With a token, user is ignored.
func (c Credentials) matches(user, secret string) bool {
	eq := func(a, b string) int {
		ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
		return subtle.ConstantTimeCompare(ha[:], hb[:])
	}
	if c.Token != "" {
		return eq(secret, c.Token) == 1
	}
	if c.Password == "" {
		return false
	}
	return eq(user, c.User)&eq(secret, c.Password) == 1
}

// Cookies. The session cookie is HttpOnly and SameSite=Lax (so a link
// from elsewhere opens the dashboard logged in, while no other site can
// post with it); the login cookie binds the login form to its browser.
const (
	sessionCookie = "bulk_session"
	loginCookie   = "bulk_login"
	csrfField     = "csrf"
)

// session is one logged-in browser.
type session struct {
	user    string
	csrf    string // the token every form of this session carries
	expires time.Time
}

// sessions holds the logged-in browsers in memory: a restarted
// coordinator logs everyone out.
type sessions struct {
	mu  sync.Mutex
	m   map[string]*session
	ttl time.Duration
	max int
	now func() time.Time
}

func newSessions(ttl time.Duration, max int, now func() time.Time) *sessions {
	return &sessions{m: make(map[string]*session), ttl: ttl, max: max, now: now}
}

// randomToken returns 32 random bytes as text.
func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// create starts a session for user and returns its ID.
func (s *sessions) create(user string) (string, *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if len(s.m) >= s.max {
		s.prune(now)
	}
	for len(s.m) >= s.max { // still full: drop the session closest to expiry
		var oldest string
		for id, ss := range s.m {
			if oldest == "" || ss.expires.Before(s.m[oldest].expires) {
				oldest = id
			}
		}
		delete(s.m, oldest)
	}
	id := randomToken()
	ss := &session{user: user, csrf: randomToken(), expires: now.Add(s.ttl)}
	s.m[id] = ss
	return id, ss
}

// get returns the live session id names, or nil.
func (s *sessions) get(id string) *session {
	if id == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.m[id]
	if !ok {
		return nil
	}
	if !s.now().Before(ss.expires) {
		delete(s.m, id)
		return nil
	}
	return ss
}

// remove ends session id.
func (s *sessions) remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
}

func (s *sessions) prune(now time.Time) {
	for id, ss := range s.m {
		if !now.Before(ss.expires) {
			delete(s.m, id)
		}
	}
}

// limiter refuses logins from an address after too many failures within a
// window, so a password cannot be guessed at network speed. Behind a
// reverse proxy every browser shares the proxy's address.
type limiter struct {
	mu     sync.Mutex
	fails  map[string][]time.Time
	max    int
	window time.Duration
	now    func() time.Time
}

func newLimiter(max int, window time.Duration, now func() time.Time) *limiter {
	return &limiter{fails: make(map[string][]time.Time), max: max, window: window, now: now}
}

// recent returns addr's failures within the window, dropping older ones.
func (l *limiter) recent(addr string) []time.Time {
	cut := l.now().Add(-l.window)
	kept := l.fails[addr][:0]
	for _, t := range l.fails[addr] {
		if t.After(cut) {
			kept = append(kept, t)
		}
	}
	if len(kept) == 0 {
		delete(l.fails, addr)
		return nil
	}
	l.fails[addr] = kept
	return kept
}

// allowed reports whether addr may try to log in now.
func (l *limiter) allowed(addr string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.recent(addr)) < l.max
}

// failed records a failed login from addr.
func (l *limiter) failed(addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.fails) > 10000 { // bound the memory an address scan can take
		for a := range l.fails {
			l.recent(a)
		}
	}
	l.fails[addr] = append(l.recent(addr), l.now())
}

// remoteHost is the address part of r.RemoteAddr.
func remoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// secureRequest reports whether the browser reached the dashboard over
// HTTPS, directly or through a proxy that says so; cookies are then marked
// Secure.
func secureRequest(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

// localPath returns next if it is a path on this server, else "/": a login
// must not redirect elsewhere (an open redirect).
func localPath(next string) string {
	if next == "" || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
		return "/"
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
		return "/"
	}
	return next
}

// sameToken reports, in constant time, whether two CSRF tokens are equal
// and not empty.
func sameToken(a, b string) bool {
	return a != "" && len(a) == len(b) && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
