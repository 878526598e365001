package main

import (
	"fmt"
	"strings"
)

// plural returns n and noun, in the plural unless n is 1: "1 chunk",
// "2 chunks", "0 entries" (a consonant's y becomes ies).
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	if stem, ok := strings.CutSuffix(noun, "y"); ok && stem != "" && !strings.ContainsAny(stem[len(stem)-1:], "aeiou") {
		return fmt.Sprintf("%d %sies", n, stem)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
