package plan

import (
	"fmt"
)

// Backup modes a user can ask for.
const (
	ModeAuto   = "auto"
	ModeVolume = "volume"
	ModeFiles  = "files"
)

// DefaultFilesThreshold is how many files make a directory worth backing up
// through its block device in automatic mode: the patent's figure.
const DefaultFilesThreshold = 100_000

// SourceFacts describe a source as its host's reader sees it.
type SourceFacts struct {
	// Kind is "file", "device" or "dir" (the manifest's source kinds).
	Kind string
	// Files counts a directory's entries, up to one past the threshold;
	// it is only needed (and counted) when Device is set.
	Files int64
	// MountRoot reports that the directory is the root of a mounted
	// filesystem; Device is that filesystem's block device when the reader
	// can open it for reading, else "".
	MountRoot bool
	Device    string
}

// Choice is how a source is backed up and why.
type Choice struct {
	Mode string
	// Device, when set, is read as the volume instead of the directory.
	Device string
	Reason string
}

// ChooseMode decides how to back up path. A file or block device is a
// volume. A directory is backed up file by file, unless automatic mode finds
// more than threshold files in it and it is the root of a mounted
// filesystem whose device the reader can read: then the device is read as
// a volume, which beats opening that many files. Asking for a mode that
// cannot apply is an error saying why.
func ChooseMode(requested, path string, f SourceFacts, threshold int64) (Choice, error) {
	if threshold <= 0 {
		threshold = DefaultFilesThreshold
	}
	isDir := f.Kind == "dir"
	switch requested {
	case ModeVolume:
		switch {
		case !isDir:
			return Choice{Mode: ModeVolume, Reason: fmt.Sprintf("%s is a %s, backed up as a volume as asked", path, f.Kind)}, nil
		case f.MountRoot && f.Device != "":
			return Choice{Mode: ModeVolume, Device: f.Device, Reason: fmt.Sprintf("%s is the root of the filesystem on %s; backing up the device as asked", path, f.Device)}, nil
		case f.MountRoot:
			return Choice{}, fmt.Errorf("volume mode: %s is a mounted filesystem, but its block device cannot be read here", path)
		default:
			return Choice{}, fmt.Errorf("volume mode: %s is a directory, not the root of a mounted filesystem; use --mode files", path)
		}
	case ModeFiles:
		if !isDir {
			return Choice{}, fmt.Errorf("files mode: %s is a %s, not a directory; use --mode volume", path, f.Kind)
		}
		return Choice{Mode: ModeFiles, Reason: fmt.Sprintf("%s is a directory, backed up file by file as asked", path)}, nil
	case ModeAuto, "":
	default:
		return Choice{}, fmt.Errorf("unknown mode %q (want auto, volume or files)", requested)
	}
	if !isDir {
		return Choice{Mode: ModeVolume, Reason: fmt.Sprintf("%s is a %s: volume mode", path, f.Kind)}, nil
	}
	// Only a mounted filesystem's root with a readable device can go
	// through the device, so only then are its files worth counting.
	switch {
	case !f.MountRoot:
		return Choice{Mode: ModeFiles, Reason: fmt.Sprintf("%s is a directory, not the root of a mounted filesystem: files mode", path)}, nil
	case f.Device == "":
		return Choice{Mode: ModeFiles, Reason: fmt.Sprintf("%s is the root of a mounted filesystem whose block device cannot be read here: files mode", path)}, nil
	case f.Files <= threshold:
		return Choice{Mode: ModeFiles, Reason: fmt.Sprintf("%s holds %d files, not more than %d: files mode", path, f.Files, threshold)}, nil
	}
	return Choice{Mode: ModeVolume, Device: f.Device, Reason: fmt.Sprintf("%s holds more than %d files and is the root of the filesystem on %s: volume mode through the device", path, threshold, f.Device)}, nil
}
