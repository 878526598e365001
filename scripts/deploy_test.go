// Package scripts holds the tests of the deployment files: compose.yaml, the
// Dockerfile, configs/nats-server.conf, .env.example and the local fleet
// scripts (fleet-up.sh, fleet-down.sh), which start the compose topology as
// processes.
package scripts

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/bulkbackup/bulkbackup/internal/testenv"
	"github.com/bulkbackup/bulkbackup/pkg/volgen"
)

// binNames are the bulkbackup binaries under cmd/.
var binNames = []string{"coordinator", "reader", "compressor", "bulkctl"}

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.RemoveBinaries()
	os.Exit(code)
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// flagsCache holds the flag names of each binary (and bulkctl subcommand).
var (
	flagsMu    sync.Mutex
	flagsCache = map[string]map[string]bool{}
)

var usageFlagRE = regexp.MustCompile(`(?m)^  -([A-Za-z0-9][A-Za-z0-9_.-]*)`)

// flagsOf returns the flags `BIN [SUB] -h` lists. Usage goes to stderr and
// the exit status is 2, as the flag package does it.
func flagsOf(t testing.TB, bin string, sub ...string) map[string]bool {
	t.Helper()
	key := strings.Join(append([]string{bin}, sub...), " ")
	flagsMu.Lock()
	defer flagsMu.Unlock()
	if f, ok := flagsCache[key]; ok {
		return f
	}
	cmd := exec.Command(filepath.Join(testenv.Binaries(t), bin), append(slices.Clone(sub), "-h")...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	usage := stderr.String()
	if bin == "bulkctl" {
		// bulkctl's help, asked for, is output: stdout, exit 0.
		if err != nil {
			t.Fatalf("%s -h: want exit status 0, got %v\n%s", key, err, usage)
		}
		usage = stdout.String()
	} else if exit := (*exec.ExitError)(nil); !errors.As(err, &exit) || exit.ExitCode() != 2 {
		// The services' is the flag package's: stderr, exit 2.
		t.Fatalf("%s -h: want exit status 2, got %v\n%s", key, err, usage)
	}
	f := map[string]bool{"h": true, "help": true}
	for _, m := range usageFlagRE.FindAllStringSubmatch(usage, -1) {
		f[m[1]] = true
	}
	if len(f) < 4 {
		t.Fatalf("%s -h: found no flags in the usage:\n%s", key, usage)
	}
	flagsCache[key] = f
	return f
}

var (
	commandsOnce sync.Once
	commands     []string
)

// bulkctlCommands returns bulkctl's subcommands, from the usage `bulkctl
// --help` prints ("  bulkctl backup SOURCE ...").
func bulkctlCommands(t testing.TB) []string {
	t.Helper()
	commandsOnce.Do(func() {
		out, _ := exec.Command(filepath.Join(testenv.Binaries(t), "bulkctl"), "--help").CombinedOutput()
		for _, m := range regexp.MustCompile(`(?m)^\s+bulkctl ([a-z][a-z-]*)`).FindAllStringSubmatch(string(out), -1) {
			if !slices.Contains(commands, m[1]) {
				commands = append(commands, m[1])
			}
		}
	})
	if len(commands) == 0 {
		t.Fatal("bulkctl --help lists no commands")
	}
	return commands
}

// checkArgs reports flags in args that bin does not have. For bulkctl the
// first argument is the subcommand.
func checkArgs(t testing.TB, where, bin string, args []string) {
	t.Helper()
	var sub []string
	if bin == "bulkctl" {
		if len(args) == 0 {
			return
		}
		switch {
		case args[0] == "-h" || args[0] == "--help" || args[0] == "help":
			return
		case args[0] == "schedule" && len(args) > 1 && !strings.HasPrefix(args[1], "-"):
			// A command group: its flags belong to the subcommand
			// (bulkctl schedule add -h). "list|show" in a usage line names
			// alternatives; the first stands for them.
			action, _, _ := strings.Cut(args[1], "|")
			sub, args = []string{args[0], action}, args[2:]
		case slices.Contains(bulkctlCommands(t), args[0]):
			sub, args = args[:1], args[1:]
		default:
			t.Errorf("%s: bulkctl has no command %q", where, args[0])
			return
		}
	}
	known := flagsOf(t, bin, sub...)
	for _, a := range args {
		if a == "--" {
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if bin == "bulkctl" && name == "r" { // bulkctl's alias of --repo
			continue
		}
		if !known[name] {
			t.Errorf("%s: %s has no flag %s", where, strings.Join(append([]string{bin}, sub...), " "), a)
		}
	}
}

// compose is the part of compose.yaml the tests read.
type compose struct {
	Services map[string]*service `yaml:"services"`
	Volumes  map[string]any      `yaml:"volumes"`
}

type service struct {
	Image           string               `yaml:"image"`
	Build           *build               `yaml:"build"`
	Command         []string             `yaml:"command"`
	Entrypoint      []string             `yaml:"entrypoint"`
	Environment     map[string]string    `yaml:"environment"`
	Volumes         []string             `yaml:"volumes"`
	Ports           []string             `yaml:"ports"`
	Healthcheck     *healthcheck         `yaml:"healthcheck"`
	Restart         string               `yaml:"restart"`
	Profiles        []string             `yaml:"profiles"`
	DependsOn       map[string]dependsOn `yaml:"depends_on"`
	Hostname        string               `yaml:"hostname"`
	User            string               `yaml:"user"`
	ContainerName   string               `yaml:"container_name"`
	StopGracePeriod string               `yaml:"stop_grace_period"`
}

type build struct {
	Context string `yaml:"context"`
	Target  string `yaml:"target"`
}

type healthcheck struct {
	Test        []string `yaml:"test"`
	Interval    string   `yaml:"interval"`
	Timeout     string   `yaml:"timeout"`
	Retries     int      `yaml:"retries"`
	StartPeriod string   `yaml:"start_period"`
}

type dependsOn struct {
	Condition string `yaml:"condition"`
}

// serviceKeys are the service attributes compose.yaml may use: a typo
// (healtcheck) would otherwise pass unnoticed.
var serviceKeys = []string{
	"image", "build", "command", "entrypoint", "environment", "volumes", "ports", "healthcheck",
	"restart", "profiles", "depends_on", "hostname", "user", "container_name", "stop_grace_period",
	"devices", "group_add", "deploy", "labels", "logging",
}

func loadCompose(t testing.TB) *compose {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testenv.ModuleRoot(t), "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var raw struct {
		Services map[string]map[string]any `yaml:"services"`
	}
	if err := yaml.Unmarshal(data, &raw); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	for name, attrs := range raw.Services {
		for k := range attrs {
			if !slices.Contains(serviceKeys, k) {
				t.Errorf("compose.yaml: service %s: unexpected attribute %q", name, k)
			}
		}
	}
	var c compose
	if err := yaml.Unmarshal(data, &c); err != nil {
		t.Fatalf("compose.yaml: %v (use the list form for command, entrypoint and healthcheck.test)", err)
	}
	if len(c.Services) == 0 {
		t.Fatal("compose.yaml: no services")
	}
	return &c
}

// ours reports whether a service runs the bulkbackup image.
func (s *service) ours() bool {
	return s.Build != nil && s.Build.Target == "bulkbackup"
}

// binary returns the bulkbackup binary a service runs and its arguments.
func (s *service) binary() (string, []string) {
	argv := append(slices.Clone(s.Entrypoint), s.Command...)
	if len(argv) == 0 {
		return "", nil
	}
	return filepath.Base(argv[0]), argv[1:]
}

func (s *service) flag(name string) (string, bool) {
	_, args := s.binary()
	for i, a := range args {
		if a == "--"+name || a == "-"+name {
			if i+1 < len(args) {
				return args[i+1], true
			}
			return "", true
		}
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// TestComposeFlags checks that every bulkbackup service's command uses only
// flags its binary has, by asking the binaries (`BIN -h`).
func TestComposeFlags(t *testing.T) {
	c := loadCompose(t)
	n := 0
	for name, s := range c.Services {
		if !s.ours() {
			continue
		}
		bin, args := s.binary()
		if !slices.Contains(binNames, bin) {
			t.Errorf("compose.yaml: service %s runs %q, not one of %v", name, bin, binNames)
			continue
		}
		checkArgs(t, "compose.yaml: service "+name, bin, args)
		n++
	}
	if n < 4 {
		t.Errorf("compose.yaml: %d services run the bulkbackup image, want coordinator, reader, compressor and bulkctl", n)
	}
}

// TestComposeStructure checks the topology compose.yaml promises.
func TestComposeStructure(t *testing.T) {
	c := loadCompose(t)
	svc := func(name string) *service {
		t.Helper()
		s := c.Services[name]
		if s == nil {
			t.Fatalf("compose.yaml: no service %s", name)
		}
		return s
	}

	// Three NATS nodes, each its own named volume, clustered by routes to
	// all three, sharing configs/nats-server.conf.
	var nats []string
	for name, s := range c.Services {
		if strings.HasPrefix(s.Image, "nats:") {
			nats = append(nats, name)
		}
	}
	slices.Sort(nats)
	if !slices.Equal(nats, []string{"nats1", "nats2", "nats3"}) {
		t.Fatalf("compose.yaml: NATS services %v, want nats1, nats2, nats3", nats)
	}
	wantNATSVersion := scriptVar(t, "install-nats.sh", "NATS_VERSION")
	var urls []string
	for _, name := range nats {
		s := c.Services[name]
		urls = append(urls, "nats://"+name+":4222")
		if want := "nats:" + strings.TrimPrefix(wantNATSVersion, "v") + "-alpine"; s.Image != want {
			t.Errorf("compose.yaml: %s image %s, want %s (the version scripts/install-nats.sh installs for the tests)", name, s.Image, want)
		}
		if got := s.Environment["NATS_SERVER_NAME"]; got != name {
			t.Errorf("compose.yaml: %s: NATS_SERVER_NAME=%q, want %q", name, got, name)
		}
		for i, peer := range nats {
			key := fmt.Sprintf("NATS_ROUTE_%d", i+1)
			if want := "nats-route://" + peer + ":6222"; s.Environment[key] != want {
				t.Errorf("compose.yaml: %s: %s=%q, want %q", name, key, s.Environment[key], want)
			}
		}
		if !slices.Contains(s.Volumes, "./configs/nats-server.conf:/etc/nats/nats-server.conf:ro") {
			t.Errorf("compose.yaml: %s does not mount ./configs/nats-server.conf read-only", name)
		}
		if !slices.Contains(s.Volumes, name+"-data:/data") {
			t.Errorf("compose.yaml: %s does not keep /data in the named volume %s-data", name, name)
		}
	}
	if !fileExists(filepath.Join(testenv.ModuleRoot(t), "configs", "nats-server.conf")) {
		t.Error("configs/nats-server.conf is missing")
	}
	conf, _ := os.ReadFile(filepath.Join(testenv.ModuleRoot(t), "configs", "nats-server.conf"))
	if !regexp.MustCompile(`(?m)^max_payload: 8MB$`).Match(conf) {
		t.Error("configs/nats-server.conf: want max_payload: 8MB")
	}

	// The coordinator uses the cluster, with replicated streams.
	coord := svc("coordinator")
	if v, _ := coord.flag("nats"); v != strings.Join(urls, ",") {
		t.Errorf("compose.yaml: coordinator --nats %q, want %q", v, strings.Join(urls, ","))
	}
	if v, _ := coord.flag("replicas"); v != "3" {
		t.Errorf("compose.yaml: coordinator --replicas %q, want 3", v)
	}
	for _, f := range []string{"listen", "data"} {
		if _, ok := coord.flag(f); ok {
			t.Errorf("compose.yaml: coordinator --%s configures the embedded server, which --nats turns off", f)
		}
	}

	// The reader: a host name, the data mounted read-only.
	rd := svc("reader")
	if v, _ := rd.flag("host"); v == "" {
		t.Error("compose.yaml: reader has no --host")
	}
	if !slices.ContainsFunc(rd.Volumes, func(v string) bool { return strings.HasSuffix(v, ":/data:ro") }) {
		t.Errorf("compose.yaml: reader does not mount the host's data read-only at /data: %v", rd.Volumes)
	}

	// Compressors scale: nothing that would clash between replicas, and
	// time to drain on SIGTERM.
	comp := svc("compressor")
	if comp.ContainerName != "" || len(comp.Ports) > 0 {
		t.Error("compose.yaml: compressor has a container_name or ports; it could not be scaled")
	}
	drain := 30 * time.Second
	if v, ok := comp.flag("drain-timeout"); ok {
		var err error
		if drain, err = time.ParseDuration(v); err != nil {
			t.Errorf("compose.yaml: compressor --drain-timeout %q: %v", v, err)
		}
	}
	if grace, err := time.ParseDuration(comp.StopGracePeriod); err != nil || grace <= drain {
		t.Errorf("compose.yaml: compressor stop_grace_period %q must exceed the drain timeout %v", comp.StopGracePeriod, drain)
	}

	// bulkctl is on demand only.
	cli := svc("bulkctl")
	if !slices.Contains(cli.Profiles, "cli") {
		t.Error("compose.yaml: bulkctl is not in the cli profile")
	}

	// Health checks and restart policies on every long-running service;
	// dependencies only on services that exist, and healthy ones.
	for name, s := range c.Services {
		if len(s.Profiles) > 0 {
			continue
		}
		if s.Healthcheck == nil || len(s.Healthcheck.Test) < 2 || s.Healthcheck.Test[0] != "CMD" {
			t.Errorf("compose.yaml: %s has no health check of the form [CMD, program, args...]", name)
		} else if s.ours() || s.Build != nil {
			// Our images are distroless: busybox is the only helper.
			if prog := s.Healthcheck.Test[1]; prog != "busybox" && prog != "minio" {
				t.Errorf("compose.yaml: %s health check runs %q, which the image does not have (use busybox)", name, prog)
			}
		}
		if !slices.Contains([]string{"always", "unless-stopped", "on-failure"}, s.Restart) {
			t.Errorf("compose.yaml: %s restart %q, want unless-stopped, always or on-failure", name, s.Restart)
		}
	}
	for name, s := range c.Services {
		for dep, d := range s.DependsOn {
			if c.Services[dep] == nil {
				t.Errorf("compose.yaml: %s depends on %s, which does not exist", name, dep)
			} else if d.Condition == "service_healthy" && c.Services[dep].Healthcheck == nil {
				t.Errorf("compose.yaml: %s waits for %s to be healthy, which has no health check", name, dep)
			}
		}
	}
	for _, name := range []string{"coordinator", "reader", "compressor"} {
		for _, n := range nats {
			if c.Services[name].DependsOn[n].Condition != "service_healthy" {
				t.Errorf("compose.yaml: %s does not wait for %s to be healthy", name, n)
			}
		}
	}

	// Named volumes: every one used is declared, every one declared used.
	used := map[string]bool{}
	for name, s := range c.Services {
		for _, v := range s.Volumes {
			src, _, ok := strings.Cut(v, ":")
			if !ok || strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/") || strings.HasPrefix(src, "$") {
				continue // a bind mount
			}
			used[src] = true
			if _, ok := c.Volumes[src]; !ok {
				t.Errorf("compose.yaml: %s uses volume %s, which is not declared", name, src)
			}
		}
	}
	for v := range c.Volumes {
		if !used[v] {
			t.Errorf("compose.yaml: volume %s is declared but not used", v)
		}
	}
	if _, ok := c.Volumes["minio-data"]; !ok {
		t.Error("compose.yaml: MinIO's data is not in a named volume minio-data")
	}

	// Images: the build targets exist in the Dockerfile, which pins the
	// MinIO version the tests use.
	dockerfile, err := os.ReadFile(filepath.Join(testenv.ModuleRoot(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range c.Services {
		if s.Build != nil && !regexp.MustCompile(`(?m)^FROM \S+ AS `+regexp.QuoteMeta(s.Build.Target)+`$`).Match(dockerfile) {
			t.Errorf("compose.yaml: %s builds target %q, which the Dockerfile does not have", name, s.Build.Target)
		}
	}
	m := regexp.MustCompile(`(?m)^ARG MINIO_VERSION=(\S+)$`).FindSubmatch(dockerfile)
	if want := scriptVar(t, "install-minio.sh", "MINIO_VERSION"); m == nil || string(m[1]) != want {
		t.Errorf("Dockerfile: MINIO_VERSION is not %s, the version scripts/install-minio.sh pins", want)
	}
	for _, want := range []string{"CGO_ENABLED=0", "FROM gcr.io/distroless/static", "USER 65532:65532"} {
		if !bytes.Contains(dockerfile, []byte(want)) {
			t.Errorf("Dockerfile: no %q", want)
		}
	}
}

// secretRE matches environment variables that hold secrets.
var secretRE = regexp.MustCompile(`PASSWORD|SECRET|ACCESS_KEY|CREDS|TOKEN`)

// TestComposeSecrets checks that secrets come from the env file and never
// appear in compose.yaml or on a command line.
func TestComposeSecrets(t *testing.T) {
	c := loadCompose(t)
	data, err := os.ReadFile(filepath.Join(testenv.ModuleRoot(t), "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	example := envExample(t)
	refRE := regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:?[-?][^}]*)?\}`)
	for _, m := range refRE.FindAllStringSubmatch(string(data), -1) {
		if _, ok := example[m[1]]; !ok && !strings.HasPrefix(m[2], ":-") && !strings.HasPrefix(m[2], "-") {
			t.Errorf("compose.yaml uses ${%s} without a default, and .env.example does not set it", m[1])
		}
	}
	for name, s := range c.Services {
		for k, v := range s.Environment {
			if secretRE.MatchString(k) && !regexp.MustCompile(`^\$\{[A-Z_]+:\?[^}]*\}$`).MatchString(v) {
				t.Errorf("compose.yaml: %s: %s must be ${VAR:?message}, taken from .env, not %q", name, k, v)
			}
		}
		argv := append(append(slices.Clone(s.Entrypoint), s.Command...), healthTest(s)...)
		for _, a := range argv {
			lower := strings.ToLower(a)
			if strings.Contains(a, "${") || strings.Contains(lower, "password") || strings.Contains(lower, "secret") {
				t.Errorf("compose.yaml: %s: %q on a command line; secrets go in the environment", name, a)
			}
			for k, v := range example {
				if secretRE.MatchString(k) && v != "" && strings.Contains(a, v) {
					t.Errorf("compose.yaml: %s: the value of %s on a command line", name, k)
				}
			}
		}
	}
	for k, v := range example {
		if secretRE.MatchString(k) && bytes.Contains(data, []byte(v)) {
			t.Errorf("compose.yaml contains the value of %s from .env.example", k)
		}
	}
	for _, k := range []string{"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "BULK_NATS_USER", "BULK_NATS_PASSWORD"} {
		if _, ok := example[k]; !ok {
			t.Errorf(".env.example does not set %s", k)
		}
	}
}

func healthTest(s *service) []string {
	if s.Healthcheck == nil {
		return nil
	}
	return s.Healthcheck.Test
}

// envExample reads .env.example's assignments.
func envExample(t testing.TB) map[string]string {
	t.Helper()
	f, err := os.Open(filepath.Join(testenv.ModuleRoot(t), ".env.example"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Errorf(".env.example: not an assignment: %q", line)
			continue
		}
		env[k] = v
	}
	return env
}

// scriptVar returns the default of VAR in a script's `VAR="${VAR:-value}"`.
func scriptVar(t testing.TB, script, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testenv.ModuleRoot(t), "scripts", script))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + name + `="\$\{` + name + `:-([^}]+)\}"$`).FindSubmatch(data)
	if m == nil {
		t.Fatalf("scripts/%s: no %s=\"${%s:-...}\"", script, name, name)
	}
	return string(m[1])
}

// docs are the documents whose shell examples are checked.
var docs = []string{"README.md", "docs/operations.md"}

// shellLines returns the lines of the sh/bash/console code blocks in a
// Markdown file, comments removed, split at ; & | into commands.
func shellLines(t testing.TB, path string) [][]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testenv.ModuleRoot(t), path))
	if err != nil {
		t.Fatal(err)
	}
	var cmds [][]string
	in := false
	for line := range strings.SplitSeq(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "```") {
			if in {
				in = false
			} else {
				lang := strings.TrimPrefix(trimmed, "```")
				in = lang == "sh" || lang == "bash" || lang == "shell" || lang == "console"
			}
			continue
		}
		if !in {
			continue
		}
		trimmed = strings.TrimPrefix(trimmed, "$ ")
		for _, seg := range regexp.MustCompile(`\s(?:&&|\|\||[;&|])\s|\s&$`).Split(trimmed, -1) {
			if words := shellWords(seg); len(words) > 0 {
				cmds = append(cmds, words)
			}
		}
	}
	return cmds
}

// shellWords splits a command into words: quotes group, a word starting
// with # ends the line, brackets of [optional] arguments are dropped.
func shellWords(s string) []string {
	var words []string
	var cur strings.Builder
	var quote rune
	inWord := false
	for _, r := range s {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case r == '#' && !inWord:
			return trimBrackets(words)
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return trimBrackets(words)
}

func trimBrackets(words []string) []string {
	out := words[:0]
	for _, w := range words {
		if w = strings.Trim(w, "[]()"); w != "" {
			out = append(out, w)
		}
	}
	return out
}

// composeUse is one `docker compose` command of the docs: the services it
// names, and for run, the arguments after the service.
type composeUse struct {
	where    string
	services []string
	runArgs  []string
}

// composeUses finds the docker compose commands in cmds.
func composeUses(where string, cmds [][]string) []composeUse {
	// Options that take a value: docker compose's own, and its commands'
	// (-f is --file before the command, but logs -f is --follow).
	globalWithValue := []string{"-f", "--file", "-p", "--project-name", "--profile", "--env-file", "--project-directory"}
	withValue := []string{"-t", "--timeout", "-e", "--env", "-u", "--user", "-w", "--workdir", "--entrypoint",
		"--name", "--index", "-n", "--tail", "-l", "--label", "-p", "--publish", "-v", "--volume"}
	var uses []composeUse
	for _, w := range cmds {
		i := slices.Index(w, "compose")
		if i < 1 || w[i-1] != "docker" {
			continue
		}
		w = w[i+1:]
		// global options, then the command
		for len(w) > 0 && strings.HasPrefix(w[0], "-") {
			if slices.Contains(globalWithValue, w[0]) && len(w) > 1 {
				w = w[1:]
			}
			w = w[1:]
		}
		if len(w) == 0 {
			continue
		}
		verb, rest := w[0], w[1:]
		u := composeUse{where: where + ": docker compose " + strings.Join(w, " ")}
		for j := 0; j < len(rest); j++ {
			a := rest[j]
			if s, ok := strings.CutPrefix(a, "--scale="); ok {
				a = "--scale"
				rest = slices.Insert(rest, j+1, s)
			}
			switch {
			case a == "--scale" && j+1 < len(rest):
				svc, _, _ := strings.Cut(rest[j+1], "=")
				u.services = append(u.services, svc)
				j++
			case slices.Contains(withValue, a):
				j++
			case strings.HasPrefix(a, "-"):
			case verb == "run" || verb == "exec":
				u.services = append(u.services, a)
				u.runArgs = rest[j+1:]
				j = len(rest)
			case slices.Contains([]string{"up", "down", "logs", "restart", "stop", "start", "kill", "rm", "ps",
				"pull", "build", "pause", "unpause", "top", "events", "create"}, verb):
				u.services = append(u.services, a)
			}
		}
		uses = append(uses, u)
	}
	return uses
}

// TestDocsMatchCompose checks the README's and docs/operations.md's shell
// examples against compose.yaml and the binaries: every service a docker
// compose command names exists, every HOST in a bulkctl HOST:PATH run
// through compose is a reader's --host, and every bulkbackup command uses
// only flags its binary has.
func TestDocsMatchCompose(t *testing.T) {
	c := loadCompose(t)
	hosts := map[string]bool{}
	for _, s := range c.Services {
		if bin, _ := s.binary(); bin == "reader" {
			if h, _ := s.flag("host"); h != "" {
				hosts[h] = true
			}
		}
	}
	composeCmds := 0
	for _, doc := range docs {
		cmds := shellLines(t, doc)
		for _, u := range composeUses(doc, cmds) {
			composeCmds++
			for _, name := range u.services {
				if c.Services[name] == nil {
					t.Errorf("%s: compose.yaml has no service %q", u.where, name)
				}
			}
			if len(u.services) == 1 && u.runArgs != nil {
				s := c.Services[u.services[0]]
				if s == nil || !s.ours() {
					continue
				}
				argv := append(slices.Clone(s.Entrypoint), u.runArgs...)
				if len(argv) == 0 {
					continue
				}
				bin := filepath.Base(argv[0])
				checkArgs(t, u.where, bin, argv[1:])
				if bin == "bulkctl" && len(argv) > 1 && (argv[1] == "backup" || argv[1] == "restore") {
					for _, a := range argv[2:] {
						host, _, ok := strings.Cut(a, ":")
						if ok && !strings.HasPrefix(a, "-") && !strings.Contains(a, "://") && !hosts[host] {
							t.Errorf("%s: host %q is not served by a reader in compose.yaml (readers: %v)", u.where, host, hosts)
						}
					}
				}
			}
		}
		for _, w := range cmds {
			// Commands of our binaries (bin/bulkctl, $BIN/coordinator, ...),
			// after any VAR=value assignments.
			for len(w) > 0 && regexp.MustCompile(`^[A-Z_][A-Z0-9_]*=`).MatchString(w[0]) {
				w = w[1:]
			}
			if len(w) == 0 || !slices.Contains(binNames, filepath.Base(w[0])) {
				continue
			}
			checkArgs(t, doc+": "+strings.Join(w, " "), filepath.Base(w[0]), w[1:])
		}
	}
	if composeCmds == 0 {
		t.Error("the docs show no docker compose command")
	}
}

// TestComposeReadiness checks the bulkbackup services' health check: it
// asks the service's own /readyz (pkg/metrics, served on --metrics-addr,
// here BULK_METRICS_ADDR), so compose waits for a process that is connected
// and serving, not merely started.
func TestComposeReadiness(t *testing.T) {
	c := loadCompose(t)
	for _, name := range []string{"coordinator", "reader", "compressor"} {
		svc := c.Services[name]
		test := healthTest(svc)
		if len(test) < 6 || test[1] != "busybox" || test[2] != "wget" || !strings.HasSuffix(test[len(test)-1], "/readyz") {
			t.Errorf("compose.yaml: %s health check %v does not ask /readyz", name, test)
			continue
		}
		addr := svc.Environment["BULK_METRICS_ADDR"]
		_, port, _ := strings.Cut(addr, ":")
		if port == "" || !strings.Contains(test[len(test)-1], "127.0.0.1:"+port+"/") {
			t.Errorf("compose.yaml: %s health check %v does not match BULK_METRICS_ADDR %q", name, test, addr)
		}
	}
}

// natsServer returns the nats-server binary scripts/install-nats.sh gives,
// as fleet-up.sh takes it (the pinned version, built if need be, rather than
// testenv.NATSServerBin's whatever is installed); without one the test is
// skipped, or fails when CI=true.
func natsServer(t testing.TB) string {
	t.Helper()
	cmd := exec.Command("bash", filepath.Join(testenv.ModuleRoot(t), "scripts", "install-nats.sh"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		testenv.SkipOrFail(t, "no nats-server (scripts/install-nats.sh: %v)\n%s", err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// TestNATSConfig checks configs/nats-server.conf with nats-server itself,
// with the variables compose.yaml sets.
func TestNATSConfig(t *testing.T) {
	bin := natsServer(t)
	c := loadCompose(t)
	s := c.Services["nats1"]
	if s == nil {
		t.Fatal("compose.yaml: no nats1")
	}
	cmd := exec.Command(bin, "-t", "-c", filepath.Join(testenv.ModuleRoot(t), "configs", "nats-server.conf"))
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range s.Environment {
		if strings.HasPrefix(v, "${") { // a secret from .env
			v = "x" + strings.ToLower(rand.Text())
		}
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nats-server -t -c configs/nats-server.conf: %v\n%s", err, out)
	}
}

// fleet is a running scripts/fleet-up.sh fleet.
type fleet struct {
	dir string
	env map[string]string // from FLEET_DIR/env
}

func (f *fleet) pid(t testing.TB, name string) int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(f.dir, "pids", name+".pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatalf("pids/%s.pid: %v", name, err)
	}
	return pid
}

// running reports whether pid is a live process (not a zombie).
func running(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	_, rest, _ := strings.Cut(string(stat), ") ")
	return !strings.HasPrefix(rest, "Z")
}

// peakRSS returns a process's peak resident set size (VmHWM) in bytes.
func peakRSS(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmHWM")
}

// TestFleetScripts starts the compose topology as processes with
// scripts/fleet-up.sh (3 clustered nats-server nodes, MinIO, coordinator,
// reader, 2 compressors), backs up a generated volume into MinIO through it,
// restores it elsewhere, compares the bytes, and stops everything with
// scripts/fleet-down.sh.
func TestFleetScripts(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a fleet of processes")
	}
	natsBin := natsServer(t)
	minioBin := testenv.MinIOBin(t)
	bins := testenv.Binaries(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()

	tmp := t.TempDir()
	f := &fleet{dir: filepath.Join(tmp, "fleet")}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "BULK_") || strings.HasPrefix(k, "AWS_") || strings.HasPrefix(k, "MINIO_") ||
			strings.HasPrefix(k, "FLEET_") || k == "COMPRESSORS" || k == "COMPRESSOR_WORKERS" || k == "READER_HOST" {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "FLEET_DIR="+f.dir, "COMPRESSORS=2", "FLEET_BIN="+bins, "FLEET_TIMEOUT=60",
		"BULK_NATS_BIN="+natsBin, "BULK_MINIO_BIN="+minioBin)
	script := func(name string, args ...string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, "bash", append([]string{filepath.Join(testenv.ModuleRoot(t), "scripts", name)}, args...)...)
		cmd.Env = env
		cmd.Dir = tmp
		return cmd
	}

	stopped := false
	t.Cleanup(func() {
		if !stopped {
			cmd := exec.Command("bash", filepath.Join(testenv.ModuleRoot(t), "scripts", "fleet-down.sh"))
			cmd.Env = append(slices.Clone(env), "FLEET_STOP_TIMEOUT=10")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Logf("fleet-down.sh: %v\n%s", err, out)
			}
		}
		if t.Failed() {
			logs, _ := filepath.Glob(filepath.Join(f.dir, "logs", "*.log"))
			for _, l := range logs {
				data, _ := os.ReadFile(l)
				if len(data) > 4096 {
					data = append([]byte("[...]\n"), data[len(data)-4096:]...)
				}
				t.Logf("%s:\n%s", filepath.Base(l), data)
			}
		}
	})

	start := time.Now()
	out, err := script("fleet-up.sh").CombinedOutput()
	if err != nil {
		t.Fatalf("fleet-up.sh: %v\n%s", err, out)
	}
	t.Logf("fleet-up.sh: ready in %v", time.Since(start).Round(time.Millisecond))
	for _, want := range []string{"BULK_NATS", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "bulkctl backup"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("fleet-up.sh does not tell how to use the fleet: no %q in\n%s", want, out)
		}
	}
	f.env = readEnvFile(t, filepath.Join(f.dir, "env"))
	if fi, err := os.Stat(filepath.Join(f.dir, "env")); err == nil && fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("%s/env has mode %v; it holds secrets", f.dir, fi.Mode().Perm())
	}
	for k, v := range f.env {
		if secretRE.MatchString(k) && bytes.Contains(out, []byte(v)) {
			t.Errorf("fleet-up.sh printed the value of %s", k)
		}
	}
	if urls := strings.Split(f.env["BULK_NATS"], ","); len(urls) != 3 {
		t.Errorf("BULK_NATS=%q: want the three nodes' URLs", f.env["BULK_NATS"])
	}
	names := []string{"nats1", "nats2", "nats3", "minio", "coordinator", "reader", "compressor-1", "compressor-2"}
	pids := map[string]int{}
	for _, name := range names {
		pids[name] = f.pid(t, name)
		if !running(pids[name]) {
			t.Fatalf("%s (pid %d) is not running", name, pids[name])
		}
		// No secret on any command line.
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pids[name]))
		for k, v := range f.env {
			if secretRE.MatchString(k) && bytes.Contains(cmdline, []byte(v)) {
				t.Errorf("%s has %s on its command line", name, k)
			}
		}
	}

	// The same again must refuse: one fleet per directory.
	if out, err := script("fleet-up.sh").CombinedOutput(); err == nil || !bytes.Contains(out, []byte("already running")) {
		t.Errorf("a second fleet-up.sh in the same FLEET_DIR: %v\n%s", err, out)
	}

	// Back up a generated volume through the fleet, restore it, compare.
	src := filepath.Join(tmp, "volume.img")
	const size = 32 << 20
	if err := volgen.WriteFile(ctx, src, size, volgen.Options{Seed: 7}); err != nil {
		t.Fatal(err)
	}
	repo := "s3://fleet-" + strings.ToLower(rand.Text()[:10]) + "/test"
	bulkctl := func(args ...string) []byte {
		t.Helper()
		cmd := exec.CommandContext(ctx, filepath.Join(bins, "bulkctl"), append(args, "-r", repo, "--nats", f.env["BULK_NATS"])...)
		cmd.Env = env
		for k, v := range f.env {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		start := time.Now()
		if err := cmd.Run(); err != nil {
			t.Fatalf("bulkctl %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
		}
		t.Logf("bulkctl %s: %v", args[0], time.Since(start).Round(time.Millisecond))
		return stdout.Bytes()
	}
	var backup struct {
		SnapshotID  string `json:"snapshot_id"`
		SourceBytes int64  `json:"source_bytes"`
		Chunks      int    `json:"chunks"`
	}
	if err := json.Unmarshal(bulkctl("backup", "local:"+src, "--json"), &backup); err != nil {
		t.Fatalf("backup --json: %v", err)
	}
	if backup.SnapshotID == "" || backup.SourceBytes != size {
		t.Fatalf("backup: %+v, want a snapshot of %d bytes", backup, size)
	}
	dst := filepath.Join(tmp, "restored.img")
	bulkctl("restore", backup.SnapshotID, "local:"+dst)
	got, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("restored %d bytes differ from the %d-byte source", len(got), len(want))
	}

	// The memory figures docs/operations.md quotes.
	for _, name := range names {
		if rss, err := peakRSS(pids[name]); err == nil {
			t.Logf("peak RSS %-13s %5.1f MiB", name, float64(rss)/(1<<20))
		}
	}

	// Now that the backup stored objects, nothing of the fleet's is open to
	// other users.
	checkPrivate(t, f.dir)

	stopped = true
	start = time.Now()
	if out, err := script("fleet-down.sh", "--clean").CombinedOutput(); err != nil {
		t.Fatalf("fleet-down.sh: %v\n%s", err, out)
	}
	t.Logf("fleet-down.sh: stopped in %v", time.Since(start).Round(time.Millisecond))
	for name, pid := range pids {
		if running(pid) {
			t.Errorf("%s (pid %d) still runs after fleet-down.sh", name, pid)
		}
	}
	if fileExists(f.dir) {
		t.Errorf("fleet-down.sh --clean left %s", f.dir)
	}
}

// readEnvFile reads the `export K='v'` lines of a fleet env file.
func readEnvFile(t testing.TB, path string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for line := range strings.SplitSeq(string(data), "\n") {
		line, ok := strings.CutPrefix(line, "export ")
		if !ok {
			continue
		}
		k, v, _ := strings.Cut(line, "=")
		env[k] = strings.Trim(v, "'")
	}
	for _, k := range []string{"BULK_NATS", "BULK_NATS_USER", "BULK_NATS_PASSWORD", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} {
		if env[k] == "" {
			t.Errorf("%s does not export %s", path, k)
		}
	}
	return env
}

// checkPrivate fails the test if anything under dir (the fleet's data,
// MinIO's objects among it) can be read, written or entered by another
// user: the fleet's directory must keep local users out of the backups.
func checkPrivate(t *testing.T, dir string) {
	t.Helper()
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("%s has mode %v: other users can enter it", dir, fi.Mode().Perm())
	}
	var open []string
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.Type()&fs.ModeSymlink != 0 || d.Type()&fs.ModeSocket != 0 {
			return nil
		}
		if fi, err := d.Info(); err == nil && fi.Mode().Perm()&0o077 != 0 && len(open) < 10 {
			open = append(open, fmt.Sprintf("%s (%v)", p, fi.Mode().Perm()))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(open) > 0 {
		t.Errorf("files of the fleet other users can read: %s", strings.Join(open, ", "))
	}
}
