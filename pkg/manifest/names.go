package manifest

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// File names on Linux are bytes, not text: anything but '/' and NUL. JSON
// holds only text, so a name that is not valid UTF-8 is stored encoded:
// rawMark (a NUL, which no name can contain) followed by its bytes in
// unpadded URL-safe base64 (no '/' among its letters). A name that is valid
// UTF-8 is stored as it is, so there is one form for every name. Paths are
// encoded one name at a time, so a path's structure (its '/' separators,
// its parent) stays visible; a symlink's target, which is not a path of the
// tree, is encoded whole.
const rawMark = "\x00"

var rawEncoding = base64.RawURLEncoding

// EncodeName returns the manifest form of one file name (a path element):
// name itself when it is valid UTF-8, its encoded bytes otherwise.
func EncodeName(name string) string {
	if utf8.ValidString(name) {
		return name
	}
	return rawMark + rawEncoding.EncodeToString([]byte(name))
}

// EncodePath returns the manifest form of a relative path given as the
// operating system has it: each element through EncodeName.
func EncodePath(p string) string {
	if utf8.ValidString(p) {
		return p
	}
	elems := strings.Split(p, "/")
	for i, e := range elems {
		elems[i] = EncodeName(e)
	}
	return strings.Join(elems, "/")
}

// OSPath returns the path, as the operating system names it, of a path in
// manifest form (checked by CheckPath): its encoded elements decoded.
func OSPath(p string) string {
	if !strings.Contains(p, rawMark) {
		return p
	}
	elems := strings.Split(p, "/")
	for i, e := range elems {
		if raw, ok := decodeRaw(e); ok {
			elems[i] = raw
		}
	}
	return strings.Join(elems, "/")
}

// EncodeTarget returns the manifest form of a symlink's target: the target
// when it is valid UTF-8, its bytes encoded whole otherwise.
func EncodeTarget(target string) string { return EncodeName(target) }

// OSTarget returns a symlink's target as the operating system has it, from
// its manifest form (checked by Validate).
func OSTarget(t string) string {
	if raw, ok := decodeRaw(t); ok {
		return raw
	}
	return t
}

// Display returns a path in manifest form as people read it: as it is when
// it is text, and otherwise quoted Go-style with its bytes escaped
// ("a/\xff.txt").
func Display(p string) string {
	if !strings.Contains(p, rawMark) {
		return p
	}
	return strconv.Quote(OSPath(p))
}

// decodeRaw decodes an encoded name or target; ok is false when s is not
// in the encoded form.
func decodeRaw(s string) (string, bool) {
	enc, ok := strings.CutPrefix(s, rawMark)
	if !ok {
		return "", false
	}
	raw, err := rawEncoding.DecodeString(enc)
	if err != nil {
		return "", false
	}
	return string(raw), true
}

// checkName checks one element of a path in manifest form.
func checkName(e string) error {
	enc, isRaw := strings.CutPrefix(e, rawMark)
	if !isRaw {
		if !utf8.ValidString(e) || strings.ContainsRune(e, 0) {
			return fmt.Errorf("element %q is not valid UTF-8 text nor an encoded name", e)
		}
		return nil
	}
	raw, err := rawEncoding.DecodeString(enc)
	switch {
	case err != nil:
		return fmt.Errorf("encoded name %q: %v", e, err)
	case rawEncoding.EncodeToString(raw) != enc:
		return fmt.Errorf("encoded name %q is not in canonical form", e)
	case raw == nil || strings.ContainsAny(string(raw), "/\x00"):
		return fmt.Errorf("encoded name %q is empty or holds '/' or NUL", e)
	case utf8.Valid(raw):
		return fmt.Errorf("encoded name %q is valid UTF-8 and must be stored as text", e)
	}
	return nil
}

// checkTarget checks a symlink target in manifest form.
func checkTarget(t string) error {
	switch {
	case t == "":
		return fmt.Errorf("empty symlink target")
	case strings.HasPrefix(t, rawMark):
		raw, ok := decodeRaw(t)
		if !ok || raw == "" || strings.ContainsRune(raw, 0) || utf8.ValidString(raw) || EncodeTarget(raw) != t {
			return fmt.Errorf("symlink target %q is not a valid encoded target", t)
		}
	case strings.ContainsRune(t, 0) || !utf8.ValidString(t):
		return fmt.Errorf("symlink target %q is not valid UTF-8 text nor an encoded target", t)
	}
	return nil
}

// encoded reports whether a path or target in manifest form holds an
// encoded name, which only manifest version 3 may.
func encoded(s string) bool { return strings.Contains(s, rawMark) }
