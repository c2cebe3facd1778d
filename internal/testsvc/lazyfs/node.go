package lazyfs

import (
	"context"
	"math"
	"path/filepath"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// node is go-fuse's loopback node with the operations that change file
// data or its size recorded first, so a power loss can undo them.
type node struct {
	*gofs.LoopbackNode
	lfs *FS
}

var (
	_ gofs.NodeWrapChilder = (*node)(nil)
	_ gofs.NodeCreater     = (*node)(nil)
	_ gofs.NodeOpener      = (*node)(nil)
	_ gofs.NodeSetattrer   = (*node)(nil)
)

// WrapChild makes every node of the tree a lazy one.
func (n *node) WrapChild(ctx context.Context, ops gofs.InodeEmbedder) gofs.InodeEmbedder {
	return &node{LoopbackNode: ops.(*gofs.LoopbackNode), lfs: n.lfs}
}

func (n *node) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	if n.lfs.powerOff() {
		return nil, nil, 0, syscall.EIO
	}
	ch, fh, fuseFlags, errno := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	f := &file{lf: fh.(*gofs.LoopbackFile), lfs: n.lfs}
	n.lfs.mu.Lock()
	defer n.lfs.mu.Unlock()
	if errno := n.lfs.created(f.fd()); errno != 0 {
		f.lf.Release(ctx)
		return nil, nil, 0, errno
	}
	return ch, f, fuseFlags, 0
}

// Open opens without O_TRUNC and truncates afterwards, so the cut-off
// synced bytes are recorded first.
func (n *node) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	writable := flags&syscall.O_ACCMODE != syscall.O_RDONLY
	if writable && n.lfs.powerOff() {
		return nil, 0, syscall.EIO
	}
	fh, fuseFlags, errno := n.LoopbackNode.Open(ctx, flags&^syscall.O_TRUNC)
	if errno != 0 {
		return nil, 0, errno
	}
	f := &file{lf: fh.(*gofs.LoopbackFile), lfs: n.lfs}
	if writable && flags&syscall.O_TRUNC != 0 {
		if errno := f.truncate(ctx, 0); errno != 0 {
			f.lf.Release(ctx)
			return nil, 0, errno
		}
	}
	return f, fuseFlags, 0
}

// Setattr records a truncation by name (no open file) before it is made;
// one through an open file goes to file.Setattr.
func (n *node) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if size, ok := in.GetSize(); ok {
		if _, open := fh.(*file); !open {
			if errno := n.beforeTruncate(int64(size)); errno != 0 {
				return errno
			}
		}
	}
	return n.LoopbackNode.Setattr(ctx, fh, in, out)
}

func (n *node) beforeTruncate(size int64) syscall.Errno {
	fd, err := syscall.Open(filepath.Join(n.RootData.Path, n.Path(nil)), syscall.O_RDONLY, 0)
	if err != nil {
		return gofs.ToErrno(err)
	}
	defer syscall.Close(fd)
	n.lfs.mu.Lock()
	defer n.lfs.mu.Unlock()
	if n.lfs.off {
		return syscall.EIO
	}
	return n.lfs.beforeChange(fd, size, math.MaxInt64)
}

func (f *FS) powerOff() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.off
}

// file is an open file: go-fuse's loopback file with writes, truncations
// and syncs recorded. It deliberately does not offer the backing file
// descriptor for kernel passthrough, which would bypass this process.
type file struct {
	lf  *gofs.LoopbackFile
	lfs *FS
}

var (
	_ gofs.FileReader    = (*file)(nil)
	_ gofs.FileWriter    = (*file)(nil)
	_ gofs.FileFsyncer   = (*file)(nil)
	_ gofs.FileSetattrer = (*file)(nil)
	_ gofs.FileGetattrer = (*file)(nil)
	_ gofs.FileFlusher   = (*file)(nil)
	_ gofs.FileReleaser  = (*file)(nil)
	_ gofs.FileLseeker   = (*file)(nil)
)

// fd is the backing file descriptor; it stays open until Release.
func (f *file) fd() int {
	fd, _ := f.lf.PassthroughFd()
	return fd
}

func (f *file) Read(ctx context.Context, buf []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return f.lf.Read(ctx, buf, off)
}

func (f *file) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	f.lfs.mu.Lock()
	defer f.lfs.mu.Unlock()
	if f.lfs.off {
		return 0, syscall.EIO
	}
	if errno := f.lfs.beforeChange(f.fd(), off, off+int64(len(data))); errno != 0 {
		return 0, errno
	}
	return f.lf.Write(ctx, data, off)
}

// Fsync makes the file durable as it is, unless syncs are stalled: then it
// waits for the power loss and fails. fsync and fdatasync are alike. The
// backing file is not synced: its own durability is not what is tested.
func (f *file) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	f.lfs.mu.Lock()
	defer f.lfs.mu.Unlock()
	for f.lfs.stalled && !f.lfs.off {
		f.lfs.held++
		f.lfs.cond.Wait()
		f.lfs.held--
	}
	if f.lfs.off {
		return syscall.EIO
	}
	return f.lfs.synced(f.fd())
}

func (f *file) Setattr(ctx context.Context, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if size, ok := in.GetSize(); ok {
		if errno := f.truncate(ctx, int64(size)); errno != 0 {
			return errno
		}
		in.Valid &^= fuse.FATTR_SIZE
	}
	return f.lf.Setattr(ctx, in, out)
}

// truncate records the synced bytes at and after size, then truncates.
func (f *file) truncate(ctx context.Context, size int64) syscall.Errno {
	f.lfs.mu.Lock()
	defer f.lfs.mu.Unlock()
	if f.lfs.off {
		return syscall.EIO
	}
	if errno := f.lfs.beforeChange(f.fd(), size, math.MaxInt64); errno != 0 {
		return errno
	}
	return gofs.ToErrno(syscall.Ftruncate(f.fd(), size))
}

func (f *file) Getattr(ctx context.Context, out *fuse.AttrOut) syscall.Errno {
	return f.lf.Getattr(ctx, out)
}

func (f *file) Flush(ctx context.Context) syscall.Errno { return f.lf.Flush(ctx) }

func (f *file) Release(ctx context.Context) syscall.Errno { return f.lf.Release(ctx) }

func (f *file) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	return f.lf.Lseek(ctx, off, whence)
}
