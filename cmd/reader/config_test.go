package main

import (
	"flag"
	"os"
	"testing"

	"github.com/bulkbackup/bulkbackup/pkg/config"
)

var update = flag.Bool("update", false, "rewrite configs/reader.yaml from the flags")

// TestExampleConfig keeps configs/reader.yaml in step with the binary's flags:
// it must parse, and show every flag with its default.
func TestExampleConfig(t *testing.T) {
	const path = "../../configs/reader.yaml"
	newFlags := func() *flag.FlagSet { fs, _ := flags(); return fs }
	if *update {
		header := "# reader: every option with its default. Precedence: flags > BULK_* env > this file.\n\n"
		if err := os.WriteFile(path, []byte(header+config.DefaultsYAML(newFlags())), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := config.CheckExample(newFlags, path); err != nil {
		t.Fatalf("%v (run: go test ./cmd/reader -run TestExampleConfig -update)", err)
	}
}
