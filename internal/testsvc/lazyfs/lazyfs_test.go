package lazyfs

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/mpim/mpim/internal/testsvc"
)

// mount mounts a lazy file system for t; it fails t if FUSE is missing.
func mount(t *testing.T) (*FS, string, string) {
	t.Helper()
	backing, mnt := t.TempDir(), t.TempDir()
	f, err := Mount(backing, mnt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.Unmount(); err != nil {
			t.Error(err)
		}
	})
	return f, backing, mnt
}

func create(t *testing.T, path string) *os.File {
	t.Helper()
	return open(t, path, os.O_CREATE|os.O_RDWR|os.O_APPEND)
}

// open opens path on the mount and closes it when t ends, before the
// unmount: a file of the mount still open when this process (its server)
// exits would wait on the server for ever.
func open(t *testing.T, path string, flags int) *os.File {
	t.Helper()
	file, err := os.OpenFile(path, flags, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { file.Close() })
	return file
}

func write(t *testing.T, file *os.File, s string) {
	t.Helper()
	if _, err := file.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

func datasync(t *testing.T, file *os.File) {
	t.Helper()
	if err := syscall.Fdatasync(int(file.Fd())); err != nil {
		t.Fatal(err)
	}
}

func wantFile(t *testing.T, path, want string) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("%s holds %q after the power loss, want %q", filepath.Base(path), got, want)
	}
}

func reboot(t *testing.T, f *FS) Dropped {
	t.Helper()
	d, err := f.Reboot()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// Appends after the last fdatasync are lost at a power loss, those before
// it are kept; a file created and never synced survives empty, a renamed
// synced file keeps its name and contents.
func TestPowerLossKeepsWhatWasSynced(t *testing.T) {
	f, backing, mnt := mount(t)
	aof := create(t, filepath.Join(mnt, "log"))
	write(t, aof, "one;")
	write(t, aof, "two;")
	datasync(t, aof)
	write(t, aof, "three;")
	aof.Close()

	tmp := create(t, filepath.Join(mnt, "manifest.tmp"))
	write(t, tmp, "m1")
	datasync(t, tmp)
	tmp.Close()
	if err := os.Rename(filepath.Join(mnt, "manifest.tmp"), filepath.Join(mnt, "manifest")); err != nil {
		t.Fatal(err)
	}
	never := create(t, filepath.Join(mnt, "never-synced"))
	write(t, never, "lost")
	never.Close()
	wantFile(t, filepath.Join(backing, "log"), "one;two;three;") // written through until the crash

	d := reboot(t, f)
	wantFile(t, filepath.Join(mnt, "log"), "one;two;")
	wantFile(t, filepath.Join(mnt, "manifest"), "m1")
	wantFile(t, filepath.Join(mnt, "never-synced"), "")
	if d.Bytes != int64(len("three;")+len("lost")) || d.Files != 2 {
		t.Errorf("dropped %v, want 10 bytes in 2 files", d)
	}

	// After the reboot what is there is durable, and the file goes on.
	aof = create(t, filepath.Join(mnt, "log"))
	write(t, aof, "four;")
	aof.Close()
	reboot(t, f)
	wantFile(t, filepath.Join(mnt, "log"), "one;two;")
}

// Synced bytes overwritten or cut off after the last sync are restored.
func TestPowerLossRestoresOverwrittenAndTruncated(t *testing.T) {
	f, _, mnt := mount(t)
	path := filepath.Join(mnt, "file")
	file := open(t, path, os.O_CREATE|os.O_RDWR)
	write(t, file, "abcdef")
	datasync(t, file)
	if _, err := file.WriteAt([]byte("XY"), 2); err != nil {
		t.Fatal(err)
	}
	if err := file.Truncate(3); err != nil {
		t.Fatal(err)
	}
	if _, err := file.WriteAt([]byte("ZZZZ"), 1); err != nil {
		t.Fatal(err)
	}
	file.Close()
	if err := os.Truncate(path, 1); err != nil {
		t.Fatal(err)
	}
	open(t, path, os.O_RDWR|os.O_TRUNC).Close()

	reboot(t, f)
	wantFile(t, path, "abcdef")
}

// A stalled fsync does not complete: it fails once the power is off, and
// what it was to make durable is lost.
func TestStalledSyncNeverCompletes(t *testing.T) {
	f, _, mnt := mount(t)
	file := create(t, filepath.Join(mnt, "log"))
	write(t, file, "kept;")
	datasync(t, file)
	f.StallSyncs()
	write(t, file, "stalled;")
	done := make(chan error, 1)
	go func() { done <- syscall.Fdatasync(int(file.Fd())) }()
	testsvc.Eventually(t, 30*time.Second, "the fdatasync held by the stall", func() bool {
		select {
		case err := <-done:
			t.Fatalf("fdatasync returned (%v) while syncs are stalled", err)
		default:
		}
		return f.HeldSyncs() == 1
	})
	f.PowerOff()
	if err := <-done; err != syscall.EIO {
		t.Errorf("stalled fdatasync after the power loss: %v, want EIO", err)
	}
	if _, err := file.WriteString("after;"); err == nil {
		t.Error("a write after the power loss succeeded")
	}
	file.Close()
	reboot(t, f)
	wantFile(t, filepath.Join(mnt, "log"), "kept;")
}
