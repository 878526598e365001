package config

import (
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
)

// Size is a byte count that implements [flag.Value], so it can be used with
// [flag.FlagSet.Var]. It parses with [ParseSize] and prints in the largest
// binary unit that represents it exactly ("4MiB", "1536KiB", "1000B").
type Size int64

// Set parses s with [ParseSize] and stores the result.
func (s *Size) Set(v string) error {
	n, err := ParseSize(v)
	if err != nil {
		return err
	}
	*s = Size(n)
	return nil
}

// String formats s in the largest binary unit (KiB, MiB, GiB, TiB) that
// divides it exactly, or in bytes with a "B" suffix; zero prints as "0".
// The result parses back to the same value with [ParseSize].
func (s Size) String() string {
	n := int64(s)
	if n == 0 {
		return "0"
	}
	sign := ""
	u := uint64(n)
	if n < 0 {
		sign, u = "-", uint64(-n) // -MinInt64 wraps to its own magnitude as uint64
	}
	for i := len(binaryUnits) - 1; i >= 0; i-- {
		if m := binaryUnits[i].mult; u%m == 0 {
			return sign + strconv.FormatUint(u/m, 10) + binaryUnits[i].name
		}
	}
	return sign + strconv.FormatUint(u, 10) + "B"
}

// Get returns the size as an int64; it makes Size a [flag.Getter].
func (s Size) Get() any { return int64(s) }

type unit struct {
	name string
	mult uint64
}

var binaryUnits = []unit{
	{"KiB", 1 << 10},
	{"MiB", 1 << 20},
	{"GiB", 1 << 30},
	{"TiB", 1 << 40},
}

// units maps every accepted suffix, lowercased, to its multiplier.
var units = map[string]uint64{
	"": 1, "b": 1,
	"k": 1 << 10, "kib": 1 << 10, "kb": 1e3,
	"m": 1 << 20, "mib": 1 << 20, "mb": 1e6,
	"g": 1 << 30, "gib": 1 << 30, "gb": 1e9,
	"t": 1 << 40, "tib": 1 << 40, "tb": 1e12,
}

// ParseSize parses a byte size: a non-negative decimal number, optional
// spaces, and an optional case-insensitive unit.
//
//   - KiB, MiB, GiB, TiB and the short forms K, M, G, T are powers of 1024;
//   - KB, MB, GB, TB are powers of 1000;
//   - B or no unit means bytes.
//
// The number may have a fractional part ("1.5MiB") as long as the result is
// a whole number of bytes: "1.5KiB" is 1536, "0.1KiB" is an error. Negative
// values, exponents, empty strings and results beyond the int64 range are
// errors. Errors read `invalid size "12XB": ...`.
func ParseSize(s string) (int64, error) {
	n, err := parseSize(s)
	if err != nil {
		return 0, fmt.Errorf("invalid size %q: %w", s, err)
	}
	return n, nil
}

func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, errors.New("empty")
	}
	i := 0
	dot := false
	for ; i < len(t); i++ {
		c := t[i]
		if c == '.' && !dot {
			dot = true
			continue
		}
		if c < '0' || c > '9' {
			break
		}
	}
	num, suffix := t[:i], strings.TrimSpace(t[i:])
	if num == "" || num == "." {
		if strings.HasPrefix(t, "-") {
			return 0, errors.New("negative")
		}
		return 0, errors.New("no number")
	}
	mult, ok := units[strings.ToLower(suffix)]
	if !ok {
		return 0, fmt.Errorf("unknown unit %q (use B, KiB, MiB, GiB, TiB, K, M, G, T or KB, MB, GB, TB)", suffix)
	}
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, errors.New("bad number")
	}
	r.Mul(r, new(big.Rat).SetInt(new(big.Int).SetUint64(mult)))
	if !r.IsInt() {
		return 0, errors.New("not a whole number of bytes")
	}
	if !r.Num().IsInt64() {
		return 0, errors.New("out of range")
	}
	return r.Num().Int64(), nil
}

// FormatBytes formats n for humans in binary units with at most one
// decimal: "512 B", "4 MiB", "1.5 GiB". Unlike [Size.String] it rounds, so
// the result is for display, not for parsing back.
func FormatBytes(n int64) string {
	sign := ""
	u := uint64(n)
	if n < 0 {
		sign, u = "-", uint64(-n)
	}
	if u < 1024 {
		return sign + strconv.FormatUint(u, 10) + " B"
	}
	names := [...]string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	v := float64(u) / 1024
	i := 0
	// Move up a unit when rounding to one decimal would print 1024.0.
	for v >= 1023.95 && i < len(names)-1 {
		v /= 1024
		i++
	}
	str := strconv.FormatFloat(v, 'f', 1, 64)
	str = strings.TrimSuffix(str, ".0")
	return sign + str + " " + names[i]
}
