package config_test

import (
	"errors"
	"flag"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/config"
)

// stringList is a repeatable flag: each Set appends.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }
func (l *stringList) Get() any           { return []string(*l) }

// settings is what the test flag set fills in.
type settings struct {
	ChunkSize config.Size
	Workers   int
	Repo      string
	JSON      bool
	Tags      stringList
	Timeout   time.Duration
	Config    string
}

func newFlags() (*flag.FlagSet, *settings) {
	s := &settings{ChunkSize: 4 << 20}
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Var(&s.ChunkSize, "chunk-size", "size of one chunk")
	fs.IntVar(&s.Workers, "workers", 2, "number of workers")
	fs.StringVar(&s.Repo, "r", "", "repository")
	fs.BoolVar(&s.JSON, "json", false, "print JSON")
	fs.Var(&s.Tags, "tag", "add a tag (repeatable)")
	fs.DurationVar(&s.Timeout, "timeout", 30*time.Second, "request timeout")
	fs.StringVar(&s.Config, "config", "", "YAML configuration file")
	return fs, s
}

func newFlagSet() *flag.FlagSet {
	fs, _ := newFlags()
	return fs
}

// envMap returns an Options.Env backed by m.
func envMap(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

// writeFile writes content to name in a fresh temp dir and returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestParsePrecedence(t *testing.T) {
	t.Parallel()
	const file = "chunk_size: 8MiB\nworkers: 3\nr: file-repo\njson: true\ntimeout: 1m\n"
	tests := []struct {
		name string
		args []string
		env  map[string]string
		yaml string // empty: no config file
		want settings
	}{
		{
			name: "defaults",
			want: settings{ChunkSize: 4 << 20, Workers: 2, Timeout: 30 * time.Second},
		},
		{
			name: "yaml over defaults",
			yaml: file,
			want: settings{ChunkSize: 8 << 20, Workers: 3, Repo: "file-repo", JSON: true, Timeout: time.Minute},
		},
		{
			name: "env over yaml",
			yaml: file,
			env:  map[string]string{"BULK_CHUNK_SIZE": "16MiB", "BULK_R": "env-repo", "BULK_JSON": "false"},
			want: settings{ChunkSize: 16 << 20, Workers: 3, Repo: "env-repo", Timeout: time.Minute},
		},
		{
			name: "flags over env",
			yaml: file,
			args: []string{"--chunk-size", "24MiB", "-r", "flag-repo", "-workers=5"},
			env:  map[string]string{"BULK_CHUNK_SIZE": "16MiB", "BULK_R": "env-repo", "BULK_WORKERS": "9"},
			want: settings{ChunkSize: 24 << 20, Workers: 5, Repo: "flag-repo", JSON: true, Timeout: time.Minute},
		},
		{
			name: "each layer wins for a different flag",
			yaml: "chunk_size: 8MiB\nworkers: 3\nr: file-repo\n",
			args: []string{"-r", "flag-repo"},
			env:  map[string]string{"BULK_WORKERS": "7"},
			want: settings{ChunkSize: 8 << 20, Workers: 7, Repo: "flag-repo", Timeout: 30 * time.Second},
		},
		{
			name: "flag set to its default still wins",
			yaml: file,
			args: []string{"-workers", "2", "-json=false"},
			want: settings{ChunkSize: 8 << 20, Workers: 2, Repo: "file-repo", Timeout: time.Minute},
		},
		{
			name: "empty env counts as unset",
			yaml: file,
			env:  map[string]string{"BULK_WORKERS": ""},
			want: settings{ChunkSize: 8 << 20, Workers: 3, Repo: "file-repo", JSON: true, Timeout: time.Minute},
		},
		{
			name: "other prefixes ignored",
			env:  map[string]string{"WORKERS": "8", "BULKWORKERS": "8", "bulk_workers": "8"},
			want: settings{ChunkSize: 4 << 20, Workers: 2, Timeout: 30 * time.Second},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fs, got := newFlags()
			args := tt.args
			if tt.yaml != "" {
				path := writeFile(t, "bulk.yaml", tt.yaml)
				args = append([]string{"-config", path}, args...)
				tt.want.Config = path
			}
			pos, err := config.Parse(fs, args, config.Options{Env: envMap(tt.env)})
			if err != nil {
				t.Fatal(err)
			}
			if len(pos) != 0 {
				t.Errorf("positional = %q, want none", pos)
			}
			if !equalSettings(*got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", *got, tt.want)
			}
		})
	}
}

func equalSettings(a, b settings) bool {
	return a.ChunkSize == b.ChunkSize && a.Workers == b.Workers && a.Repo == b.Repo &&
		a.JSON == b.JSON && slices.Equal(a.Tags, b.Tags) && a.Timeout == b.Timeout && a.Config == b.Config
}

func TestParseInterspersed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		args     []string
		wantPos  []string
		wantRepo string
		wantJSON bool
		wantTags []string
	}{
		{name: "none", args: nil, wantPos: nil},
		{name: "flags first", args: []string{"-r", "repo", "--json", "backup", "/dev/sda"},
			wantPos: []string{"backup", "/dev/sda"}, wantRepo: "repo", wantJSON: true},
		{name: "restic style", args: []string{"backup", "/dev/sda", "-r", "repo", "--json"},
			wantPos: []string{"backup", "/dev/sda"}, wantRepo: "repo", wantJSON: true},
		{name: "mixed", args: []string{"a", "--tag=x", "b", "-tag", "y", "c"},
			wantPos: []string{"a", "b", "c"}, wantTags: []string{"x", "y"}},
		{name: "bool then positional", args: []string{"--json", "a"},
			wantPos: []string{"a"}, wantJSON: true},
		{name: "dash is positional", args: []string{"-", "-r", "repo"},
			wantPos: []string{"-"}, wantRepo: "repo"},
		{name: "double dash ends flags", args: []string{"a", "--", "-r", "repo", "--json"},
			wantPos: []string{"a", "-r", "repo", "--json"}},
		{name: "double dash after flags", args: []string{"-r", "repo", "--", "-x"},
			wantPos: []string{"-x"}, wantRepo: "repo"},
		{name: "double dash first", args: []string{"--", "--json"},
			wantPos: []string{"--json"}},
		{name: "double dash at end", args: []string{"a", "--json", "--"},
			wantPos: []string{"a"}, wantJSON: true},
		{name: "double dash as a flag value", args: []string{"-r", "--", "a", "--json"},
			wantPos: []string{"a"}, wantRepo: "--", wantJSON: true},
		{name: "flag-like value then double dash", args: []string{"-r", "-x", "--", "--json"},
			wantPos: []string{"--json"}, wantRepo: "-x"},
		{name: "second double dash is positional", args: []string{"--", "a", "--"},
			wantPos: []string{"a", "--"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fs, got := newFlags()
			pos, err := config.Parse(fs, tt.args, config.Options{Env: envMap(nil)})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(pos, tt.wantPos) {
				t.Errorf("positional = %q, want %q", pos, tt.wantPos)
			}
			if got.Repo != tt.wantRepo || got.JSON != tt.wantJSON || !slices.Equal(got.Tags, tt.wantTags) {
				t.Errorf("repo=%q json=%v tags=%q, want repo=%q json=%v tags=%q",
					got.Repo, got.JSON, got.Tags, tt.wantRepo, tt.wantJSON, tt.wantTags)
			}
		})
	}
}

func TestParseLists(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		env  map[string]string
		yaml string
		want []string
	}{
		{name: "yaml list", yaml: "tag:\n  - a\n  - b\n  - 3\n", want: []string{"a", "b", "3"}},
		{name: "yaml flow list", yaml: "tag: [a, b]\n", want: []string{"a", "b"}},
		{name: "yaml scalar", yaml: "tag: a\n", want: []string{"a"}},
		{name: "yaml empty list", yaml: "tag: []\n", want: nil},
		{name: "env replaces yaml list", yaml: "tag: [a, b]\n", env: map[string]string{"BULK_TAG": "e"}, want: []string{"e"}},
		{name: "flags replace yaml list", yaml: "tag: [a, b]\n", args: []string{"-tag", "x", "-tag", "y"}, want: []string{"x", "y"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fs, got := newFlags()
			path := writeFile(t, "bulk.yaml", tt.yaml)
			if _, err := config.Parse(fs, append(tt.args, "-config", path), config.Options{Env: envMap(tt.env)}); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got.Tags, tt.want) {
				t.Errorf("tags = %q, want %q", got.Tags, tt.want)
			}
		})
	}
}

func TestParseConfigPath(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fromFlag := filepath.Join(dir, "flag.yaml")
	fromEnv := filepath.Join(dir, "env.yaml")
	for path, content := range map[string]string{fromFlag: "workers: 11\n", fromEnv: "workers: 22\n"} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	missing := filepath.Join(dir, "missing.yaml")

	tests := []struct {
		name        string
		args        []string
		env         map[string]string
		configFlag  string
		defaultPath string
		envPrefix   string
		wantWorkers int
		wantConfig  string
	}{
		{name: "from flag", args: []string{"-config", fromFlag}, wantWorkers: 11, wantConfig: fromFlag},
		{name: "from env", env: map[string]string{"BULK_CONFIG": fromEnv}, wantWorkers: 22, wantConfig: fromEnv},
		{name: "flag over env", args: []string{"-config", fromFlag}, env: map[string]string{"BULK_CONFIG": fromEnv},
			wantWorkers: 11, wantConfig: fromFlag},
		{name: "empty flag disables the file", args: []string{"-config="}, env: map[string]string{"BULK_CONFIG": fromEnv},
			wantWorkers: 2},
		{name: "from default", defaultPath: fromFlag, wantWorkers: 11, wantConfig: fromFlag},
		{name: "missing default ignored", defaultPath: missing, wantWorkers: 2, wantConfig: missing},
		{name: "custom flag name", configFlag: "settings", args: []string{"-settings", fromFlag}, wantWorkers: 11},
		{name: "custom flag name from env", configFlag: "settings", env: map[string]string{"BULK_SETTINGS": fromEnv},
			wantWorkers: 22},
		{name: "no config flag but env", configFlag: "absent", env: map[string]string{"BULK_ABSENT": fromEnv},
			wantWorkers: 22},
		{name: "custom prefix", envPrefix: "X_", env: map[string]string{"X_CONFIG": fromEnv, "BULK_CONFIG": fromFlag},
			wantWorkers: 22, wantConfig: fromEnv},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fs, got := newFlags()
			got.Config = tt.defaultPath // as if the flag were defined with this default
			var settingsPath string
			if tt.configFlag == "settings" {
				fs.StringVar(&settingsPath, "settings", "", "config file")
			}
			opts := config.Options{Env: envMap(tt.env), ConfigFlag: tt.configFlag, EnvPrefix: tt.envPrefix}
			if _, err := config.Parse(fs, tt.args, opts); err != nil {
				t.Fatal(err)
			}
			if got.Workers != tt.wantWorkers {
				t.Errorf("workers = %d, want %d", got.Workers, tt.wantWorkers)
			}
			if got.Config != tt.wantConfig {
				t.Errorf("config = %q, want %q", got.Config, tt.wantConfig)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		yaml    string // written to a temp file and passed with -config when non-empty
		wantErr []string
		wantIs  error
	}{
		{name: "bad env size", env: map[string]string{"BULK_CHUNK_SIZE": "12XB"},
			wantErr: []string{`env BULK_CHUNK_SIZE: invalid size "12XB"`}},
		{name: "bad env int names the value", env: map[string]string{"BULK_WORKERS": "many"},
			wantErr: []string{`env BULK_WORKERS: invalid value "many": parse error`}},
		{name: "bad env duration", env: map[string]string{"BULK_TIMEOUT": "soon"},
			wantErr: []string{`env BULK_TIMEOUT: `, `"soon"`}},
		{name: "all env errors reported", env: map[string]string{"BULK_WORKERS": "x", "BULK_CHUNK_SIZE": "y"},
			wantErr: []string{"env BULK_WORKERS", "env BULK_CHUNK_SIZE"}},
		{name: "bad yaml value", yaml: "chunk_size: 12XB\n",
			wantErr: []string{`bulk.yaml: chunk_size: invalid size "12XB"`}},
		{name: "unknown key", yaml: "chunk_size: 4MiB\nchunk_sise: 8MiB\n",
			wantErr: []string{`bulk.yaml: unknown key "chunk_sise"`}},
		{name: "flag spelling as key", yaml: "chunk-size: 4MiB\n",
			wantErr: []string{`unknown key "chunk-size" (write chunk_size)`}},
		{name: "unknown key even if flag given", args: []string{"-workers", "3"}, yaml: "wrokers: 3\n",
			wantErr: []string{`unknown key "wrokers"`}},
		{name: "config key in file", yaml: "config: other.yaml\n",
			wantErr: []string{"config: a config file cannot name a config file"}},
		{name: "null value", yaml: "workers:\n", wantErr: []string{"bulk.yaml: workers: line 1: no value"}},
		{name: "nested mapping", yaml: "workers:\n  a: 1\n", wantErr: []string{"bulk.yaml: workers: line 2: value must be"}},
		{name: "nested list", yaml: "tag: [[a]]\n", wantErr: []string{"bulk.yaml: tag: line 1: list elements"}},
		{name: "duplicate key", yaml: "workers: 1\nworkers: 2\n", wantErr: []string{`bulk.yaml:2: duplicate key "workers"`}},
		{name: "not a mapping", yaml: "- a\n- b\n", wantErr: []string{"bulk.yaml: top level is not a mapping"}},
		{name: "bad yaml", yaml: "workers: [1\n", wantErr: []string{"parse ", "bulk.yaml"}},
		{name: "missing file from flag", args: []string{"-config", "/nonexistent/x.yaml"},
			wantErr: []string{"/nonexistent/x.yaml"}, wantIs: os.ErrNotExist},
		{name: "missing file from env", env: map[string]string{"BULK_CONFIG": "/nonexistent/y.yaml"},
			wantErr: []string{"/nonexistent/y.yaml"}, wantIs: os.ErrNotExist},
		{name: "unknown flag", args: []string{"a", "-nope"}, wantErr: []string{"flag provided but not defined: -nope"}},
		{name: "help", args: []string{"a", "-h"}, wantIs: flag.ErrHelp},
		{name: "bad flag value", args: []string{"a", "-chunk-size", "1.5"}, wantErr: []string{"not a whole number of bytes"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fs, _ := newFlags()
			args := tt.args
			if tt.yaml != "" {
				args = append(args, "-config", writeFile(t, "bulk.yaml", tt.yaml))
			}
			_, err := config.Parse(fs, args, config.Options{Env: envMap(tt.env)})
			if err == nil {
				t.Fatal("Parse succeeded, want error")
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v is not %v", err, tt.wantIs)
			}
		})
	}
}

func TestParseRealEnv(t *testing.T) {
	t.Setenv("BULK_WORKERS", "6")
	fs, got := newFlags()
	if _, err := config.Parse(fs, nil, config.Options{}); err != nil {
		t.Fatal(err)
	}
	if got.Workers != 6 {
		t.Fatalf("workers = %d, want 6 from the real environment", got.Workers)
	}
}

func TestLoadFile(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		yaml string
		want map[string]any
	}{
		{name: "empty", yaml: "", want: map[string]any{}},
		{name: "only comments", yaml: "# nothing\n", want: map[string]any{}},
		{name: "scalars keep their text", yaml: "a: 010\nb: 1.50\nc: yes\nd: \"q\"\ne: 2024-01-01\n",
			want: map[string]any{"a": "010", "b": "1.50", "c": "yes", "d": "q", "e": "2024-01-01"}},
		{name: "list", yaml: "l: [x, 2, true]\n", want: map[string]any{"l": []string{"x", "2", "true"}}},
		{name: "alias", yaml: "a: &v 5\nb: *v\n", want: map[string]any{"a": "5", "b": "5"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := config.LoadFile(writeFile(t, "c.yaml", tt.yaml))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for k, w := range tt.want {
				switch w := w.(type) {
				case string:
					if got[k] != w {
						t.Errorf("%s = %#v, want %#v", k, got[k], w)
					}
				case []string:
					if g, ok := got[k].([]string); !ok || !slices.Equal(g, w) {
						t.Errorf("%s = %#v, want %#v", k, got[k], w)
					}
				}
			}
		})
	}
}

func TestCheckFile(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		yaml    string
		wantErr []string // empty: valid
	}{
		{name: "valid", yaml: "chunk_size: 8MiB\nworkers: 3\ntag: [a]\ntimeout: 5s\n"},
		{name: "empty", yaml: ""},
		{name: "bad values all reported", yaml: "chunk_size: 12XB\nworkers: x\ntimeout: 5\n",
			wantErr: []string{"chunk_size: invalid size", `workers: invalid value "x"`, "timeout: "}},
		{name: "unknown keys all reported", yaml: "a: 1\nb: 2\n",
			wantErr: []string{`unknown key "a"`, `unknown key "b"`}},
		{name: "config key", yaml: "config: x.yaml\n", wantErr: []string{"cannot name a config file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := writeFile(t, "c.yaml", tt.yaml)
			err := config.CheckFile(newFlagSet, path)
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("CheckFile succeeded, want error")
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), path+": ") || !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not name the file and contain %q", err, want)
				}
			}
		})
	}
}

func TestDefaultsYAML(t *testing.T) {
	t.Parallel()
	fs := newFlagSet()
	fs.String("odd", "a: b # c", "a default that needs quoting\non two lines")
	fs.String("nullish", "null", "looks like null")
	fs.String("empty", "", "empty default")
	fs.String("addr", "localhost:4222", "an address")
	var list stringList = []string{"x", "y z"}
	fs.Var(&list, "include", "repeatable with defaults")
	out := config.DefaultsYAML(fs)

	for _, want := range []string{
		"# size of one chunk\n# (flag --chunk-size, env BULK_CHUNK_SIZE)\nchunk_size: 4MiB\n",
		"# a default that needs quoting\n# on two lines\n",
		"timeout: 30s\n",
		"addr: localhost:4222\n",
		"include:\n  - x\n  - \"y z\"\n",
		"tag: []\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "config:") {
		t.Errorf("output sets the config key:\n%s", out)
	}

	// The rendering parses back to every default.
	got, err := config.LoadFile(writeFile(t, "defaults.yaml", out))
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	fs.VisitAll(func(f *flag.Flag) {
		key := strings.ReplaceAll(f.Name, "-", "_")
		switch {
		case f.Name == "config":
		case f.Name == "include":
			if g, _ := got[key].([]string); !slices.Equal(g, list) {
				t.Errorf("%s = %#v, want %q", key, got[key], list)
			}
		case f.Name == "tag":
			if g, ok := got[key].([]string); !ok || len(g) != 0 {
				t.Errorf("%s = %#v, want empty list", key, got[key])
			}
		default:
			if got[key] != f.DefValue {
				t.Errorf("%s = %#v, want %q", key, got[key], f.DefValue)
			}
		}
	})

	// And the test flag set's own defaults file is valid for it.
	if err := config.CheckFile(newFlagSet, writeFile(t, "example.yaml", config.DefaultsYAML(newFlagSet()))); err != nil {
		t.Fatal(err)
	}
}

// TestParseGiven: Given receives the flags of the command line only, not
// those the environment or the file set.
func TestParseGiven(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		env  map[string]string
		want []string
	}{
		{args: []string{"-r", "flag-repo", "pos"}, env: map[string]string{"BULK_WORKERS": "7", "BULK_JSON": "true"}, want: []string{"r"}},
		{args: []string{"-workers", "2", "-json=false"}, want: []string{"json", "workers"}},
		{env: map[string]string{"BULK_CHUNK_SIZE": "8MiB"}, want: nil},
	}
	for _, tt := range tests {
		fs, _ := newFlags()
		given := map[string]bool{}
		if _, err := config.Parse(fs, tt.args, config.Options{Env: envMap(tt.env), Given: given}); err != nil {
			t.Fatal(err)
		}
		if got := slices.Sorted(maps.Keys(given)); !slices.Equal(got, tt.want) {
			t.Errorf("Parse(%q) with env %v: given %q, want %q", tt.args, tt.env, got, tt.want)
		}
	}
}
