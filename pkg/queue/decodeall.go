package queue

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
)

// Report is what DecodeAll found wrong with a message: every problem, not
// only the first, so that a client fixes its request in one go.
type Report struct {
	// Problems says what is wrong, one sentence each, in the order of the
	// message's fields (unknown fields, then fields of the wrong type,
	// then the version).
	Problems []string
	// NotObject is set when the message is not one JSON object at all:
	// nothing of it could be read.
	NotObject bool
	// bad holds the fields that were present but could not be read.
	bad map[string]bool
}

// OK reports whether the message decoded without a problem.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// Bad reports whether field (its JSON name) was present but could not be
// read: a check of its value would only repeat that problem.
func (r *Report) Bad(field string) bool { return r.bad[field] }

// Add appends a problem found by a later check.
func (r *Report) Add(format string, args ...any) {
	r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
}

// Error joins the problems into one line, or returns "" when there are
// none.
func (r *Report) Error() string { return strings.Join(r.Problems, "; ") }

// DecodeAll reads a client's message into v as Decode does (strictly, and
// checking the version), but goes on past a problem: it reports every
// unknown field, every field of the wrong type and a wrong version, and
// fills in every field it could read, so that later checks can look at
// them and the answer to a bad request names all that is wrong. v must
// point to a struct.
func DecodeAll(data []byte, v interface{ version() int }) *Report {
	r := &Report{bad: map[string]bool{}}
	if len(data) > 1<<20 {
		r.NotObject = true
		r.Add("the message has %d bytes, more than 1 MiB", len(data))
		return r
	}
	var fields map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(data))
	err := dec.Decode(&fields)
	if err == nil {
		if _, tokErr := dec.Token(); tokErr != io.EOF {
			err = errors.New("trailing data after the JSON object")
		}
	}
	if err == nil && fields == nil {
		err = errors.New("null")
	}
	if err != nil {
		r.NotObject = true
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			err = fmt.Errorf("a JSON %s", typeErr.Value)
		}
		r.Add("not a JSON object: %v", err)
		return r
	}
	rv := reflect.ValueOf(v).Elem()
	known := jsonFields(rv.Type())
	var unknown []string
	for name := range fields {
		if _, ok := known[name]; !ok {
			unknown = append(unknown, name)
		}
	}
	slices.Sort(unknown)
	for _, name := range unknown {
		r.Add("unknown field %q", name)
	}
	names := make([]string, 0, len(fields))
	for name := range fields {
		if _, ok := known[name]; ok {
			names = append(names, name)
		}
	}
	// In the order the type declares its fields, as a reader of the
	// documentation expects them.
	slices.SortFunc(names, func(a, b string) int { return slices.Compare(known[a], known[b]) })
	for _, name := range names {
		f := rv.FieldByIndex(known[name])
		dst := reflect.New(f.Type())
		fdec := json.NewDecoder(bytes.NewReader(fields[name]))
		fdec.DisallowUnknownFields()
		if err := fdec.Decode(dst.Interface()); err != nil {
			r.bad[name] = true
			r.Add("%s", fieldProblem(name, err))
			continue
		}
		f.Set(dst.Elem())
	}
	want := MessageVersion
	if _, ok := v.(interface{ work() }); ok {
		want = WorkVersion
	}
	switch got := v.version(); {
	case r.bad["v"]:
	case fields["v"] == nil:
		r.Add("v: missing (want %d)", want)
	case got != want:
		r.Add("v: version %d is not known (want %d)", got, want)
	}
	return r
}

// jsonFields maps the JSON names of a struct's exported fields to their
// index paths, taking the fields of an embedded struct without a JSON
// name as the struct's own, as encoding/json does.
func jsonFields(t reflect.Type) map[string][]int {
	m := make(map[string][]int)
	var walk func(t reflect.Type, at []int)
	walk = func(t reflect.Type, at []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			path := append(slices.Clip(at), i)
			if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
				walk(f.Type, path)
				continue
			}
			if !f.IsExported() || name == "-" {
				continue
			}
			if name == "" {
				name = f.Name
			}
			if old, ok := m[name]; !ok || len(path) < len(old) { // the shallower field wins
				m[name] = path
			}
		}
	}
	walk(t, nil)
	return m
}

// fieldProblem says what is wrong with the value of field name.
func fieldProblem(name string, err error) string {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		where := name
		if typeErr.Field != "" {
			where += "." + typeErr.Field
		}
		return fmt.Sprintf("%s: want %s, not a JSON %s", where, jsonKind(typeErr.Type), typeErr.Value)
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	return name + ": " + msg
}

// jsonKind names the JSON type a Go type is read from.
func jsonKind(t reflect.Type) string {
	if t == nil {
		return "a value"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return "a " + t.String()
}
