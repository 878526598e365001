// Package dashboard is bulkbackup's web dashboard: the fleet's running and
// recent jobs with live progress, its workers, schedules, each source's
// history with charts, and the snapshots of each repository; and, for a
// logged-in user, starting a backup of a known source, cancelling a job and
// pausing or resuming a schedule.
//
// It is a client of the fleet like bulkctl: it reads through the
// coordinator's request/reply API (queue.SubjectAPI*), acts by publishing
// requests into the request stream (queue.SubjectRequest*) or calling the
// schedule API, and follows jobs on their event subjects. It holds no state
// of its own beyond logins, so it keeps working while the coordinator's
// internals change, and it could run in any process with a NATS connection.
//
// Pages are rendered on the server with html/template (every value is
// escaped in its context) and work without JavaScript; one small embedded
// script keeps them current from /events, a server-sent event stream.
// However many browsers watch, the dashboard holds one subscription to the
// job events and one watch of the workers bucket, and fans them out: each
// browser's stream keeps only the newest update per job, so a slow browser
// skips progress but never a final state, and never holds up the others.
// Charts are SVG drawn on the server; nothing is loaded from elsewhere, so
// the dashboard works offline and its Content-Security-Policy allows only
// itself.
//
// Security: viewing needs a login unless Config.PublicRead; every action
// needs one. A login is a token or a user and password (Credentials, from
// the environment or a file, never a flag) and makes a session: a random
// ID in an HttpOnly, SameSite=Lax cookie, kept in memory, with its own
// random CSRF token that every form carries and every action checks.
// Cross-origin posts are refused before that (http.CrossOriginProtection),
// the login form is bound to its browser by a cookie of its own, failed
// logins are limited per address, and a backup can be started only of a
// source into a repository that a job or schedule has used. Known secret
// values are removed from everything sent, in case an error quotes one.
package dashboard
