package main

import (
	"flag"
	"os"
	"testing"

	"github.com/bulkbackup/bulkbackup/pkg/config"
)

var update = flag.Bool("update", false, "rewrite configs/bulkctl.yaml from the flags")

// TestExampleConfig keeps configs/bulkctl.yaml in step with the flags every
// command shares.
func TestExampleConfig(t *testing.T) {
	const path = "../../configs/bulkctl.yaml"
	newFlags := func() *flag.FlagSet { return newFlagSet("common", &common{}) }
	if *update {
		header := "# bulkctl: the options every command shares, with their defaults.\n" +
			"# Precedence: flags > BULK_* env > this file (bulkctl --config FILE or BULK_CONFIG).\n\n"
		if err := os.WriteFile(path, []byte(header+config.DefaultsYAML(newFlags())), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := config.CheckExample(newFlags, path); err != nil {
		t.Fatalf("%v (run: go test ./cmd/bulkctl -run TestExampleConfig -update)", err)
	}
}
