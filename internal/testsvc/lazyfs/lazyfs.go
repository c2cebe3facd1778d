// Package lazyfs is a FUSE file system for power-loss tests: it passes every
// operation through to a backing directory and remembers, per file, what no
// fsync or fdatasync has made durable yet. A simulated power loss (PowerOff,
// then Reboot) reverts every file to what it held at its last completed
// sync, as a machine crash does to the page cache, which a SIGKILL of a
// process never does.
//
// The model, kept small on purpose:
//
//   - File data is durable only up to a file's last completed fsync or
//     fdatasync (both mean the same here). Writes and truncations after it
//     are undone at a power loss: appended bytes are cut off, overwritten
//     synced bytes are restored.
//   - Names (create, rename, unlink, mkdir) are durable at once, as if every
//     directory were synced after each change. A file created and never
//     synced survives a power loss empty.
//   - StallSyncs makes every later fsync wait, never completing, until the
//     power is cut: the disk stalls, then the machine loses power. That fixes
//     the crash point without any timing: everything written after the stall
//     is by construction not durable.
//
// Mounting needs /dev/fuse and root (go-fuse mounts with mount(2)), or the
// fusermount3 helper of Debian's fuse3 (scripts/services.sh installs it).
// Tests use it; nothing in production does.
package lazyfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// FS is one mounted lazy file system.
type FS struct {
	backing, mountpoint string

	mu      sync.Mutex
	cond    *sync.Cond // signalled when the power goes off
	srv     *fuse.Server
	files   map[uint64]*fileState // by the backing file's inode number
	stalled bool                  // fsyncs wait for the power loss
	off     bool                  // the power is off: writes and syncs fail
	held    int                   // fsyncs waiting now
	syncs   int                   // fsyncs completed since the last mount
}

// fileState is what a power loss would undo in one file.
type fileState struct {
	synced int64    // the file's size at its last completed sync
	undo   []extent // synced bytes overwritten or cut off since, oldest first
}

// extent is data at an offset.
type extent struct {
	off  int64
	data []byte
}

// Dropped is what a power loss undid.
type Dropped struct {
	Files int   // files reverted
	Bytes int64 // unsynced bytes cut off or synced bytes restored
}

func (d Dropped) String() string {
	return fmt.Sprintf("%d unsynced bytes in %d files", d.Bytes, d.Files)
}

// Mount mounts a lazy view of backing on mountpoint (both existing
// directories). Everything already in backing counts as durable.
func Mount(backing, mountpoint string) (*FS, error) {
	f := &FS{backing: backing, mountpoint: mountpoint, files: map[uint64]*fileState{}}
	f.cond = sync.NewCond(&f.mu)
	if err := f.mount(); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *FS) mount() error {
	root, err := gofs.NewLoopbackRoot(f.backing)
	if err != nil {
		return err
	}
	// No entry or attribute caching (the zero timeouts), and no writeback
	// cache: the kernel sends every write and fsync to this process.
	srv, err := gofs.Mount(f.mountpoint, &node{LoopbackNode: root.(*gofs.LoopbackNode), lfs: f}, &gofs.Options{
		MountOptions: fuse.MountOptions{DirectMount: true, FsName: "lazyfs", Name: "lazyfs"},
	})
	if err != nil {
		return fmt.Errorf("mounting lazyfs on %s (needs /dev/fuse and root or fusermount3): %w", f.mountpoint, err)
	}
	f.mu.Lock()
	f.srv = srv
	f.mu.Unlock()
	return closeFuseOnExec()
}

// closeFuseOnExec marks this process's /dev/fuse descriptors close-on-exec.
// go-fuse opens them without O_CLOEXEC, so every process a test starts
// (redis-server, mpimd) would inherit the connection: if the test process
// died, the mount would stay alive with nobody serving it, and a child
// blocked on it (a stalled fsync) could never exit. A child started by
// another goroutine while Mount runs can still inherit it.
func closeFuseOnExec() error {
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return err
	}
	for _, e := range fds {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && target == "/dev/fuse" {
			syscall.CloseOnExec(fd)
		}
	}
	return nil
}

// StallSyncs makes every fsync from now on wait until PowerOff, which
// fails it: nothing written from now on becomes durable.
func (f *FS) StallSyncs() {
	f.mu.Lock()
	f.stalled = true
	f.mu.Unlock()
}

// HeldSyncs is the number of fsyncs waiting in a stall.
func (f *FS) HeldSyncs() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.held
}

// Syncs is the number of fsyncs completed since the last mount.
func (f *FS) Syncs() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.syncs
}

// PowerOff cuts the power: every later write, truncation, open for writing
// and sync fails with EIO, and the syncs held by a stall fail with EIO (a
// process blocked in one, even a killed one, goes on only then). What was
// not synced before is lost at Reboot.
func (f *FS) PowerOff() {
	f.mu.Lock()
	f.off = true
	f.cond.Broadcast()
	f.mu.Unlock()
}

// Reboot cuts the power if still on, unmounts, reverts every file of the
// backing directory to its last synced contents and mounts again, with
// power and without a stall. Processes using the file system must have
// ended.
func (f *FS) Reboot() (Dropped, error) {
	f.PowerOff()
	if err := f.unmount(); err != nil {
		return Dropped{}, err
	}
	d, err := f.revert()
	if err != nil {
		return d, err
	}
	f.mu.Lock()
	f.files, f.stalled, f.off, f.syncs = map[uint64]*fileState{}, false, false, 0
	f.mu.Unlock()
	return d, f.mount()
}

// Unmount cuts the power and unmounts; it is a no-op once unmounted. Call it
// in the test's cleanup after the processes using the file system ended.
func (f *FS) Unmount() error {
	f.PowerOff()
	return f.unmount()
}

// unmount unmounts, and if the kernel still holds the mount busy detaches
// it (MNT_DETACH), so a failing test never leaves a mount behind.
func (f *FS) unmount() error {
	f.mu.Lock()
	srv := f.srv
	f.srv = nil
	f.mu.Unlock()
	if srv == nil {
		return nil
	}
	if err := srv.Unmount(); err != nil {
		if derr := syscall.Unmount(f.mountpoint, syscall.MNT_DETACH); derr != nil {
			return fmt.Errorf("unmounting %s: %v; detaching: %w", f.mountpoint, err, derr)
		}
	}
	return nil
}

// revert undoes, in every file of the backing directory, what was not
// synced: synced bytes overwritten or cut off are written back (newest
// undo first) and the file is cut to its synced size.
func (f *FS) revert() (Dropped, error) {
	var d Dropped
	err := filepath.WalkDir(f.backing, func(path string, e fs.DirEntry, err error) error {
		if err != nil || !e.Type().IsRegular() {
			return err
		}
		var st syscall.Stat_t
		if err := syscall.Stat(path, &st); err != nil {
			return err
		}
		s := f.files[st.Ino]
		if s == nil || (st.Size == s.synced && len(s.undo) == 0) {
			return nil
		}
		n, err := s.revert(path)
		d.Files++
		d.Bytes += n
		return err
	})
	return d, err
}

// revert reverts the file at path; it returns the bytes dropped.
func (s *fileState) revert(path string) (int64, error) {
	file, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer file.Close()
	var n int64
	for i := len(s.undo) - 1; i >= 0; i-- {
		u := s.undo[i]
		if _, err := file.WriteAt(u.data, u.off); err != nil {
			return n, err
		}
		n += int64(len(u.data))
	}
	info, err := file.Stat()
	if err != nil {
		return n, err
	}
	if info.Size() > s.synced {
		n += info.Size() - s.synced
	}
	return n, errors.Join(file.Truncate(s.synced), file.Close())
}

// state returns the file's state, first seen with size bytes (all durable:
// every change after the mount goes through this file system). The caller
// holds f.mu.
func (f *FS) state(ino uint64, size int64) *fileState {
	s := f.files[ino]
	if s == nil {
		s = &fileState{synced: size}
		f.files[ino] = s
	}
	return s
}

// beforeChange records, before bytes [from, to) of the file open as fd are
// changed, the synced ones among them. The caller holds f.mu.
func (f *FS) beforeChange(fd int, from, to int64) syscall.Errno {
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return gofs.ToErrno(err)
	}
	s := f.state(st.Ino, st.Size)
	to = min(to, s.synced)
	if from >= to {
		return 0
	}
	old := make([]byte, to-from)
	n, err := syscall.Pread(fd, old, from)
	if err != nil {
		return gofs.ToErrno(err)
	}
	s.undo = append(s.undo, extent{off: from, data: old[:n]})
	return 0
}

// synced marks the file open as fd durable as it is now. The caller holds
// f.mu.
func (f *FS) synced(fd int) syscall.Errno {
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return gofs.ToErrno(err)
	}
	s := f.state(st.Ino, st.Size)
	s.synced, s.undo = st.Size, nil
	f.syncs++
	return 0
}

// created forgets what was known of the inode: a new file (its number may
// be a deleted file's). The caller holds f.mu.
func (f *FS) created(fd int) syscall.Errno {
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return gofs.ToErrno(err)
	}
	f.files[st.Ino] = &fileState{}
	return 0
}
