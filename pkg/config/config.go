package config

import (
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"strings"
)

// DefaultConfigFlag is the name of the flag holding the YAML file path when
// [Options.ConfigFlag] is empty.
const DefaultConfigFlag = "config"

// DefaultEnvPrefix prefixes environment variable names when
// [Options.EnvPrefix] is empty.
const DefaultEnvPrefix = "BULK_"

// Options tunes [Parse]. The zero value reads the real environment, takes
// the YAML path from the flag "config" and uses the prefix "BULK_".
type Options struct {
	// Env looks up an environment variable; nil means os.LookupEnv. A
	// variable set to the empty string counts as unset.
	Env func(key string) (string, bool)

	// ConfigFlag names the flag that holds the YAML file path; empty means
	// "config". If the flag set has no such flag, the path can still come
	// from the environment (BULK_CONFIG).
	ConfigFlag string

	// EnvPrefix prefixes environment variable names; empty means "BULK_".
	EnvPrefix string

	// Given, if not nil, receives the names of the flags set on the
	// command line, as opposed to by the environment or the file.
	Given map[string]bool
}

func (o *Options) applyDefaults() {
	if o.Env == nil {
		o.Env = os.LookupEnv
	}
	if o.ConfigFlag == "" {
		o.ConfigFlag = DefaultConfigFlag
	}
	if o.EnvPrefix == "" {
		o.EnvPrefix = DefaultEnvPrefix
	}
}

// envName returns the environment variable for a flag: prefix, then the
// name uppercased with '-' replaced by '_'.
func envName(prefix, flagName string) string {
	return prefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// yamlKey returns the YAML key for a flag: the name with '-' replaced by '_'.
func yamlKey(flagName string) string {
	return strings.ReplaceAll(flagName, "-", "_")
}

// Parse parses args into fs and then fills every flag not given on the
// command line from the environment or the YAML file, and returns the
// positional arguments.
//
// Flags may appear before, between or after positional arguments
// ("backup /dev/sda -r repo --json"); a bare "--" ends flag parsing and
// everything after it is positional. Command-line errors are those of
// fs.Parse, so fs's error handling applies (flag.ErrHelp for -h).
//
// For each flag not set on the command line, in name order, Parse applies
// the environment variable BULK_<NAME> if it is set and non-empty, otherwise
// the value of key <name> in the YAML file, if present. Values go through
// fs.Set, so the flag's own validation applies; a YAML list calls fs.Set
// once per element (for repeatable flags). Errors name their source, such
// as `env BULK_CHUNK_SIZE: invalid size "12XB": ...` or
// `configs/x.yaml: chunk_size: ...`; all such errors are joined.
//
// The YAML path is the config flag's value if given on the command line,
// else BULK_CONFIG, else the flag's default; an empty path ("-config=")
// means no file. A file named on the command line or in the environment
// must exist; a missing default file is ignored. Unknown keys in the file are errors, as is the config key
// itself. Parse is not safe for concurrent use with other users of fs.
func Parse(fs *flag.FlagSet, args []string, opts Options) ([]string, error) {
	opts.applyDefaults()
	pos, err := parseArgs(fs, args)
	if err != nil {
		return nil, err
	}

	explicit := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
	if opts.Given != nil {
		maps.Copy(opts.Given, explicit)
	}

	path, named, err := configPath(fs, explicit, opts)
	if err != nil {
		return nil, err
	}
	var file map[string][]string
	if path != "" {
		file, err = loadValues(fs, path, opts.ConfigFlag)
		if errors.Is(err, os.ErrNotExist) && !named {
			err, file = nil, nil
		}
		if err != nil {
			return nil, err
		}
	}

	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if explicit[f.Name] || f.Name == opts.ConfigFlag {
			return
		}
		env := envName(opts.EnvPrefix, f.Name)
		if v, ok := opts.Env(env); ok && v != "" {
			if err := setFlag(fs, f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("env %s: %w", env, err))
			}
			return
		}
		for _, v := range file[f.Name] {
			if err := setFlag(fs, f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %s: %w", path, yamlKey(f.Name), err))
				return
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return pos, nil
}

// configPath finds the YAML file path and reports whether it was named
// explicitly (command line or environment) rather than being a default.
func configPath(fs *flag.FlagSet, explicit map[string]bool, opts Options) (path string, named bool, err error) {
	f := fs.Lookup(opts.ConfigFlag)
	if f != nil && explicit[f.Name] {
		return f.Value.String(), true, nil
	}
	env := envName(opts.EnvPrefix, opts.ConfigFlag)
	if v, ok := opts.Env(env); ok && v != "" {
		if f != nil {
			if err := fs.Set(f.Name, v); err != nil {
				return "", false, fmt.Errorf("env %s: %w", env, err)
			}
		}
		return v, true, nil
	}
	if f != nil {
		return f.Value.String(), false, nil
	}
	return "", false, nil
}

// setFlag calls fs.Set and, when the flag's error does not quote the
// value (as the stdlib numeric flags' "parse error" does not), adds it.
func setFlag(fs *flag.FlagSet, name, value string) error {
	err := fs.Set(name, value)
	if err == nil || strings.Contains(err.Error(), fmt.Sprintf("%q", value)) {
		return err
	}
	return fmt.Errorf("invalid value %q: %w", value, err)
}

// parseArgs parses args allowing positional arguments between flags and
// returns the positional arguments in order.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if stoppedAtTerminator(fs, args) {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// stoppedAtTerminator reports whether fs.Parse(args), which succeeded,
// stopped at a "--" rather than at a positional argument. It replays the
// stdlib parsing rules, because "--" may also be the value of a flag
// ("-o --").
func stoppedAtTerminator(fs *flag.FlagSet, args []string) bool {
	for i := 0; i < len(args); i++ {
		s := args[i]
		if s == "--" {
			return true
		}
		if len(s) < 2 || s[0] != '-' {
			return false
		}
		name := strings.TrimPrefix(s[1:], "-")
		if strings.Contains(name, "=") {
			continue
		}
		f := fs.Lookup(name)
		if f == nil {
			continue // only -h/-help get here; fs.Parse returned ErrHelp already
		}
		if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && bf.IsBoolFlag() {
			continue
		}
		i++ // the next argument is this flag's value
	}
	return false
}
