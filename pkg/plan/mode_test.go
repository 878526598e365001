package plan_test

import (
	"strings"
	"testing"

	"github.com/bulkbackup/bulkbackup/pkg/plan"
)

func TestChooseMode(t *testing.T) {
	t.Parallel()
	const (
		path      = "/srv/data"
		dev       = "/dev/sdb1"
		threshold = 1000
	)
	dir := func(files int64, mountRoot bool, device string) plan.SourceFacts {
		return plan.SourceFacts{Kind: "dir", Files: files, MountRoot: mountRoot, Device: device}
	}
	file := plan.SourceFacts{Kind: "file"}
	device := plan.SourceFacts{Kind: "device"}
	tests := []struct {
		name      string
		requested string
		facts     plan.SourceFacts
		threshold int64
		wantMode  string
		wantDev   string
		// wantWords are facts the reason (or, with wantErr, the error)
		// must mention.
		wantWords []string
		wantErr   bool
	}{
		// Automatic choice.
		{"auto file", plan.ModeAuto, file, threshold, plan.ModeVolume, "", []string{path, "file", "volume"}, false},
		{"auto device", plan.ModeAuto, device, threshold, plan.ModeVolume, "", []string{path, "device", "volume"}, false},
		{"empty mode is auto", "", device, threshold, plan.ModeVolume, "", []string{path, "device"}, false},
		{"auto dir under threshold", plan.ModeAuto, dir(10, true, dev), threshold, plan.ModeFiles, "", []string{path, "10 files", "1000"}, false},
		{"auto dir at threshold", plan.ModeAuto, dir(threshold, true, dev), threshold, plan.ModeFiles, "", []string{"1000 files", "not more than 1000"}, false},
		{"auto dir over threshold on a readable mount root", plan.ModeAuto, dir(threshold+1, true, dev), threshold, plan.ModeVolume, dev, []string{path, "more than 1000", dev, "root"}, false},
		{"auto dir over threshold not a mount root", plan.ModeAuto, dir(threshold+1, false, ""), threshold, plan.ModeFiles, "", []string{path, "not the root"}, false},
		{"auto dir over threshold, device not readable", plan.ModeAuto, dir(threshold+1, true, ""), threshold, plan.ModeFiles, "", []string{path, "cannot be read"}, false},
		{"auto default threshold under", plan.ModeAuto, dir(plan.DefaultFilesThreshold, true, dev), 0, plan.ModeFiles, "", []string{"not more than 100000"}, false},
		{"auto default threshold over", plan.ModeAuto, dir(plan.DefaultFilesThreshold+1, true, dev), -1, plan.ModeVolume, dev, []string{"more than 100000", dev}, false},
		// Explicit volume mode.
		{"volume on a file", plan.ModeVolume, file, threshold, plan.ModeVolume, "", []string{path, "file", "as asked"}, false},
		{"volume on a device", plan.ModeVolume, device, threshold, plan.ModeVolume, "", []string{path, "device", "as asked"}, false},
		{"volume on a readable mount root, few files", plan.ModeVolume, dir(3, true, dev), threshold, plan.ModeVolume, dev, []string{path, "root", dev, "as asked"}, false},
		{"volume on a mount root, device not readable", plan.ModeVolume, dir(3, true, ""), threshold, "", "", []string{"volume mode", path, "cannot be read"}, true},
		{"volume on a plain dir", plan.ModeVolume, dir(threshold+1, false, ""), threshold, "", "", []string{"volume mode", path, "not the root", "--mode files"}, true},
		// Explicit files mode.
		{"files on a dir", plan.ModeFiles, dir(threshold+1, true, dev), threshold, plan.ModeFiles, "", []string{path, "directory", "as asked"}, false},
		{"files on a file", plan.ModeFiles, file, threshold, "", "", []string{"files mode", path, "a file", "--mode volume"}, true},
		{"files on a device", plan.ModeFiles, device, threshold, "", "", []string{"files mode", path, "a device", "--mode volume"}, true},
		// Nonsense.
		{"unknown mode", "tape", dir(1, false, ""), threshold, "", "", []string{`"tape"`, "auto, volume or files"}, true},
		{"mode is case sensitive", "Files", dir(1, false, ""), threshold, "", "", []string{`"Files"`}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := plan.ChooseMode(tt.requested, path, tt.facts, tt.threshold)
			text := got.Reason
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ChooseMode = %+v, want an error", got)
				}
				if got != (plan.Choice{}) {
					t.Errorf("ChooseMode = %+v with error %v, want no choice", got, err)
				}
				text = err.Error()
			} else {
				if err != nil {
					t.Fatalf("ChooseMode: %v", err)
				}
				if got.Mode != tt.wantMode || got.Device != tt.wantDev {
					t.Errorf("ChooseMode = mode %q device %q, want mode %q device %q", got.Mode, got.Device, tt.wantMode, tt.wantDev)
				}
			}
			for _, w := range tt.wantWords {
				if !strings.Contains(text, w) {
					t.Errorf("%q does not mention %q", text, w)
				}
			}
		})
	}
}
