package config

import (
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// LoadFile reads the YAML configuration file at path. The top level must be
// a mapping; each value is returned as the scalar text written in the file
// (string, whatever its YAML type: "4MiB", "8", "true") or, for a
// sequence of scalars, as []string. Null values, nested mappings, nested
// sequences and duplicate keys are errors. An empty file yields an empty
// map. A missing file is an error that satisfies errors.Is(err,
// os.ErrNotExist) and names the path.
func LoadFile(path string) (map[string]any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	out := make(map[string]any)
	if doc.Kind == 0 { // empty document
		return out, nil
	}
	root := resolve(doc.Content[0])
	if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
		return out, nil // only comments
	}
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s: top level is not a mapping of keys to values", path)
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := resolve(root.Content[i]), resolve(root.Content[i+1])
		key := k.Value
		if k.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("%s:%d: key is not a scalar", path, k.Line)
		}
		if _, dup := out[key]; dup {
			return nil, fmt.Errorf("%s:%d: duplicate key %q", path, k.Line, key)
		}
		val, err := nodeValue(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", path, key, err)
		}
		out[key] = val
	}
	return out, nil
}

// resolve follows an alias to the node it names.
func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func nodeValue(n *yaml.Node) (any, error) {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.ShortTag() == "!!null" {
			return nil, fmt.Errorf("line %d: no value", n.Line)
		}
		return n.Value, nil
	case yaml.SequenceNode:
		list := make([]string, 0, len(n.Content))
		for _, e := range n.Content {
			e = resolve(e)
			if e.Kind != yaml.ScalarNode || e.ShortTag() == "!!null" {
				return nil, fmt.Errorf("line %d: list elements must be strings, numbers or booleans", e.Line)
			}
			list = append(list, e.Value)
		}
		return list, nil
	default:
		return nil, fmt.Errorf("line %d: value must be a string, number, boolean or list", n.Line)
	}
}

// loadValues loads the file at path and maps its keys to the flags of fs,
// returning the values to apply per flag name. Unknown keys and the key of
// configFlag are errors, all of them reported.
func loadValues(fs *flag.FlagSet, path, configFlag string) (map[string][]string, error) {
	raw, err := LoadFile(path)
	if err != nil {
		return nil, err
	}
	byKey := make(map[string]string)
	fs.VisitAll(func(f *flag.Flag) { byKey[yamlKey(f.Name)] = f.Name })

	var errs []error
	vals := make(map[string][]string, len(raw))
	for _, key := range slices.Sorted(maps.Keys(raw)) {
		name, ok := byKey[key]
		switch {
		case !ok && byKey[yamlKey(key)] != "":
			errs = append(errs, fmt.Errorf("%s: unknown key %q (write %s)", path, key, yamlKey(key)))
			continue
		case !ok:
			errs = append(errs, fmt.Errorf("%s: unknown key %q", path, key))
			continue
		case name == configFlag:
			errs = append(errs, fmt.Errorf("%s: %s: a config file cannot name a config file", path, key))
			continue
		}
		switch v := raw[key].(type) {
		case string:
			vals[name] = []string{v}
		case []string:
			vals[name] = v
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return vals, nil
}

// CheckFile validates the YAML file at path against the flags built by
// newFlags: every key must name a flag and every value must be accepted by
// that flag's Set. It reports all problems, joined, each naming the file
// and key. newFlags is called once, so the values are set on a throwaway
// flag set; the key "config" is rejected as in [Parse]. Use it in a test
// that loads every file in configs/.
func CheckFile(newFlags func() *flag.FlagSet, path string) error {
	fs := newFlags()
	vals, err := loadValues(fs, path, DefaultConfigFlag)
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(vals)) {
		for _, v := range vals[name] {
			if err := setFlag(fs, name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %s: %w", path, yamlKey(name), err))
				break
			}
		}
	}
	return errors.Join(errs...)
}

// DefaultsYAML renders a YAML configuration file that sets every flag of fs
// to its default, each preceded by its usage text and its flag and
// environment spellings as comments. The flag named "config" is left out,
// since a config file cannot name one. A flag whose value is a
// [flag.Getter] returning []string is rendered as a list of its current
// values, so call DefaultsYAML on a freshly built flag set. The output
// parses back with [LoadFile] to the defaults' text.
func DefaultsYAML(fs *flag.FlagSet) string {
	var b strings.Builder
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == DefaultConfigFlag {
			return
		}
		if b.Len() > 0 {
			b.WriteByte('\n')
		}
		for _, line := range strings.Split(strings.TrimSpace(f.Usage), "\n") {
			b.WriteString(strings.TrimRight("# "+line, " "))
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "# (flag --%s, env %s)\n", f.Name, envName(DefaultEnvPrefix, f.Name))
		key := yamlKey(f.Name)
		if g, ok := f.Value.(flag.Getter); ok {
			if list, ok := g.Get().([]string); ok {
				if len(list) == 0 {
					fmt.Fprintf(&b, "%s: []\n", key)
					return
				}
				fmt.Fprintf(&b, "%s:\n", key)
				for _, v := range list {
					fmt.Fprintf(&b, "  - %s\n", yamlScalar(v))
				}
				return
			}
		}
		fmt.Fprintf(&b, "%s: %s\n", key, yamlScalar(f.DefValue))
	})
	return b.String()
}

var plainScalar = regexp.MustCompile(`^[A-Za-z0-9_./][A-Za-z0-9_.:/+@-]*$`)

// yamlScalar writes s plain when YAML reads it back as the same text, and
// double-quoted otherwise. YAML double-quoted escapes are a superset of
// those strconv.Quote produces.
func yamlScalar(s string) string {
	switch s {
	case "~", "null", "Null", "NULL":
		return strconv.Quote(s)
	}
	if plainScalar.MatchString(s) && !strings.HasSuffix(s, ":") {
		return s
	}
	if _, err := strconv.ParseFloat(s, 64); err == nil {
		return s // "-1", "-0.5"
	}
	return strconv.Quote(s)
}

// CheckExample checks that the YAML file at path is valid for the flags
// newFlags builds (CheckFile) and shows every one of them but the config
// flag, so an example file cannot fall behind the binary's flags.
func CheckExample(newFlags func() *flag.FlagSet, path string) error {
	if err := CheckFile(newFlags, path); err != nil {
		return err
	}
	values, err := LoadFile(path)
	if err != nil {
		return err
	}
	var missing []string
	newFlags().VisitAll(func(f *flag.Flag) {
		if _, ok := values[yamlKey(f.Name)]; !ok && f.Name != DefaultConfigFlag {
			missing = append(missing, yamlKey(f.Name))
		}
	})
	if len(missing) > 0 {
		return fmt.Errorf("%s does not show the options %s", path, strings.Join(missing, ", "))
	}
	return nil
}
