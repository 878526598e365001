package source_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/bulkbackup/bulkbackup/pkg/source"
)

// mountInfo is a mountinfo as a container host shows it (proc(5)): optional
// fields or none, octal escapes for space (\040), tab (\011), newline
// (\012) and backslash (\134), a bind mount of a subdirectory, and
// filesystems without a device.
const mountInfo = `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro
23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
24 22 0:5 / /dev rw,nosuid,relatime shared:2 - devtmpfs udev rw,size=8123456k,nr_inodes=2030864,mode=755
45 22 8:17 / /mnt/my\040disk rw,relatime shared:30 - xfs /dev/sdb1 rw,attr2,inode64
46 22 8:1 /srv/data /srv/bind\011tab\012nl rw,relatime master:1 propagate_from:2 - ext4 /dev/sda1 rw

47 22 0:40 / /mnt/back\134slash\134 rw - tmpfs tmp\040fs rw
48 22 0:41 / /mnt/nfs rw,relatime unbindable - nfs4 server:/export\040dir rw,vers=4.2
49 45 253:0 / /mnt/my\040disk/odd\0 rw - ext4 /dev/mapper/vg-lv\999 rw
`

func TestParseMountInfo(t *testing.T) {
	t.Parallel()
	got, err := source.ParseMountInfo(mountInfo)
	if err != nil {
		t.Fatal(err)
	}
	want := []source.Mount{
		{Point: "/", Root: "/", Source: "/dev/sda1", FSType: "ext4"},
		{Point: "/proc", Root: "/", Source: "proc", FSType: "proc"},
		{Point: "/dev", Root: "/", Source: "udev", FSType: "devtmpfs"},
		{Point: "/mnt/my disk", Root: "/", Source: "/dev/sdb1", FSType: "xfs"},
		{Point: "/srv/bind\ttab\nnl", Root: "/srv/data", Source: "/dev/sda1", FSType: "ext4"},
		{Point: `/mnt/back\slash\`, Root: "/", Source: "tmp fs", FSType: "tmpfs"},
		{Point: "/mnt/nfs", Root: "/", Source: "server:/export dir", FSType: "nfs4"},
		// Not escapes: a short one at the end, and digits that are not octal.
		{Point: `/mnt/my disk/odd\0`, Root: "/", Source: `/dev/mapper/vg-lv\999`, FSType: "ext4"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ParseMountInfo:\n got %q\nwant %q", got, want)
	}
}

func TestParseMountInfoMalformed(t *testing.T) {
	t.Parallel()
	for _, line := range []string{
		"garbage",
		"22 1 8:1 / / rw,relatime ext4 /dev/sda1 rw", // no separator
		"22 1 8:1 / - ext4 /dev/sda1 rw",             // too few fields before it
		"22 1 8:1 / / rw,relatime - ext4",            // too few after it
		"22 1 8:1 / / rw,relatime -",                 // nothing after it
	} {
		if got, err := source.ParseMountInfo(line + "\n"); err == nil {
			t.Errorf("ParseMountInfo(%q) = %v, want an error", line, got)
		}
	}
	if got, err := source.ParseMountInfo(""); err != nil || got != nil {
		t.Errorf("ParseMountInfo(\"\") = %v, %v, want nothing", got, err)
	}
}

func TestMountDevice(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/proc/self/mountinfo"); err != nil {
		t.Skipf("no mount table here: %v", err)
	}
	dir := t.TempDir()
	tests := []struct {
		name     string
		dir      string
		wantRoot bool
	}{
		// procfs is mounted, from no device, wherever this test runs.
		{"proc", "/proc", true},
		{"proc through a relative path", "/proc/self/..", true},
		{"plain directory", dir, false},
		{"missing directory", filepath.Join(dir, "missing"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			root, device, err := source.MountDevice(tt.dir)
			if err != nil {
				t.Fatal(err)
			}
			if root != tt.wantRoot || device != "" {
				t.Fatalf("MountDevice(%s) = %v, %q, want %v, \"\"", tt.dir, root, device, tt.wantRoot)
			}
		})
	}
}

// TestMountDeviceRoot checks what MountDevice says of "/": always a mount
// root, and when it names a device, a block device.
func TestMountDeviceRoot(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/proc/self/mountinfo"); err != nil {
		t.Skipf("no mount table here: %v", err)
	}
	root, device, err := source.MountDevice("/")
	if err != nil || !root {
		t.Fatalf("MountDevice(/) = %v, %q, %v, want a mount root", root, device, err)
	}
	if device == "" {
		return // an overlay or a device this user cannot read
	}
	fi, err := os.Stat(device)
	if err != nil || fi.Mode()&os.ModeDevice == 0 || fi.Mode()&os.ModeCharDevice != 0 {
		t.Fatalf("MountDevice(/) names %s, not a block device (%v, %v)", device, fi, err)
	}
}

func TestCountFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// 10 entries: 3 directories, 6 files, a symlink (not followed).
	for i := range 3 {
		for j := range 2 {
			put(t, dir, fmt.Sprintf("d%d/f%d", i, j), nil, 0o644)
		}
	}
	symlink(t, dir, filepath.Join(dir, "loop"))
	const all = 10
	tests := []struct {
		limit int64
		want  int64
	}{
		{1000, all},
		{all + 1, all},
		{all, all},
		{all - 1, all},
		{3, 4},
		{1, 2},
		{0, 1},
	}
	for _, tt := range tests {
		got, err := source.CountFiles(t.Context(), dir, tt.limit)
		if err != nil || got != tt.want {
			t.Errorf("CountFiles(limit %d) = %d, %v, want %d", tt.limit, got, err, tt.want)
		}
	}

	empty := t.TempDir()
	if got, err := source.CountFiles(t.Context(), empty, 10); err != nil || got != 0 {
		t.Errorf("CountFiles(empty dir) = %d, %v, want 0", got, err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := source.CountFiles(ctx, dir, 1000); !errors.Is(err, context.Canceled) {
		t.Errorf("CountFiles with a cancelled context = %v, want context.Canceled", err)
	}
}

func TestCountFilesUnreadableDir(t *testing.T) {
	t.Parallel()
	if os.Geteuid() == 0 {
		t.Skip("root lists directories of mode 000; this case needs an unprivileged user")
	}
	dir := t.TempDir()
	put(t, dir, "closed/a", nil, 0o644)
	put(t, dir, "closed/b", nil, 0o644)
	mkdirMode(t, dir, "closed", 0)
	t.Cleanup(func() { os.Chmod(filepath.Join(dir, "closed"), 0o755) })
	if got, err := source.CountFiles(t.Context(), dir, 100); err != nil || got != 1 {
		t.Fatalf("CountFiles = %d, %v, want the closed directory counted once", got, err)
	}
}
