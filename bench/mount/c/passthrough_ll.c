/*
 * A passthrough FUSE filesystem on the libfuse3 LOW-LEVEL API, multi-threaded: the ceiling that
 * `npm run bench` measures vpoolfs against ("what FUSE itself allows on this machine"). Written for the
 * benchmark in the spirit of libfuse's example/passthrough_ll.c (not a copy of it): every inode is an
 * O_PATH descriptor of the backing file, every open file a plain descriptor, every request one system
 * call on it, answered from the libfuse worker thread that received it.
 *
 *   passthrough_ll MOUNTPOINT BACKINGDIR [--threads N] [--no-parallel-direct-writes]
 *
 * Built by the benchmark itself (bench/c-passthrough.ts: gcc against libfuse3-dev). Runs in the
 * foreground; SIGTERM/SIGINT end the session loop, unmount and exit 0. As root, fuse_session_mount() mounts
 * with mount(2) directly (no fusermount3 needed).
 *
 * What it asks of the kernel, so that it is a fair ceiling for vpoolfs's own engine (DESIGN.md, "A FUSE
 * engine on /dev/fuse"):
 *  - max_write 1 MiB (libfuse3 then answers INIT with MAX_PAGES), max_background 64;
 *  - no AUTO_INVAL_DATA (it causes GETATTR storms under concurrent reads), no writeback cache;
 *  - opens with O_DIRECT get FOPEN_DIRECT_IO and FOPEN_PARALLEL_DIRECT_WRITES, so that concurrent direct
 *    writes to one file are not serialised on the inode lock. libfuse 3.14 (Debian 12) has no field for
 *    FOPEN_PARALLEL_DIRECT_WRITES in fuse_file_info, so the flag is added to the OPEN/CREATE reply on its
 *    way to /dev/fuse through fuse_session_custom_io(); libfuse >= 3.15 sets it itself.
 *  - the backing files are opened without O_DIRECT (like the fuse-native passthrough and vpoolfs's write
 *    cache): reads may come from the page cache of the backing file.
 */
#define FUSE_USE_VERSION 312
#define _GNU_SOURCE

#include <fuse_lowlevel.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <unistd.h>

/* From <linux/fuse.h>, spelled out here so that this file does not depend on the kernel headers' version. */
#define OP_OPEN 14
#define OP_CREATE 35
#define OPEN_FLAG_PARALLEL_DIRECT_WRITES (1u << 6)
struct in_header { uint32_t len, opcode; uint64_t unique; uint64_t nodeid; uint32_t uid, gid, pid; uint16_t total_extlen, padding; };
struct out_header { uint32_t len; int32_t error; uint64_t unique; };

#define MAX_IO (1u << 20)
static const double TIMEOUT = 1.0; /* attribute and entry cache, seconds (libfuse's example's default) */

struct node {
	struct node *next, *prev; /* in the table, under table_lock */
	int fd;                   /* O_PATH descriptor of the backing file or directory */
	ino_t ino;
	dev_t dev;
	uint64_t lookups;         /* the kernel's lookup count, under table_lock */
};

static struct node root = { .next = &root, .prev = &root };
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static int parallel_direct_writes = 1;

static struct node *node_of(fuse_ino_t ino) { return ino == FUSE_ROOT_ID ? &root : (struct node *)(uintptr_t)ino; }
static int fd_of(fuse_ino_t ino) { return node_of(ino)->fd; }

static void proc_path(char *buf, size_t n, int fd) { snprintf(buf, n, "/proc/self/fd/%d", fd); }

/* --- OPEN/CREATE replies get FOPEN_PARALLEL_DIRECT_WRITES (libfuse 3.14 cannot set it) ----------------- */

/* Uniques of OPEN/CREATE requests received and not yet answered. Opens are rare: a small array will do. */
#define PENDING 256
static uint64_t pending[PENDING];
static pthread_mutex_t pending_lock = PTHREAD_MUTEX_INITIALIZER;

static ssize_t io_read(int fd, void *buf, size_t len, void *userdata)
{
	(void)userdata;
	ssize_t n = read(fd, buf, len);
	if (parallel_direct_writes && n >= (ssize_t)sizeof(struct in_header)) {
		const struct in_header *h = buf;
		if (h->opcode == OP_OPEN || h->opcode == OP_CREATE) {
			int err = errno;
			pthread_mutex_lock(&pending_lock);
			for (int i = 0; i < PENDING; i++) {
				if (pending[i] == 0) { pending[i] = h->unique; break; }
			}
			pthread_mutex_unlock(&pending_lock);
			errno = err;
		}
	}
	return n;
}

static ssize_t io_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	(void)userdata;
	if (parallel_direct_writes && count >= 2 && iov[0].iov_len >= sizeof(struct out_header)) {
		struct out_header *h = iov[0].iov_base;
		int found = 0;
		pthread_mutex_lock(&pending_lock);
		for (int i = 0; i < PENDING; i++) {
			if (pending[i] == h->unique) { pending[i] = 0; found = 1; break; }
		}
		pthread_mutex_unlock(&pending_lock);
		/* fuse_open_out {fh u64, open_flags u32, padding u32} ends the reply (after fuse_entry_out for CREATE). */
		if (found && h->error == 0 && iov[count - 1].iov_len >= 16) {
			uint32_t *flags = (uint32_t *)((char *)iov[count - 1].iov_base + iov[count - 1].iov_len - 8);
			/* Only where it has an effect: the kernel takes the shared inode lock for FOPEN_DIRECT_IO files. */
			if (*flags & 1u /* FOPEN_DIRECT_IO */) *flags |= OPEN_FLAG_PARALLEL_DIRECT_WRITES;
		}
	}
	return writev(fd, iov, count);
}

/* --- lookup and the inode table ----------------------------------------------------------------------- */

static int do_lookup(fuse_ino_t parent, const char *name, struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->attr_timeout = TIMEOUT;
	e->entry_timeout = TIMEOUT;
	int fd = openat(fd_of(parent), name, O_PATH | O_NOFOLLOW);
	if (fd == -1) return errno;
	if (fstatat(fd, "", &e->attr, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == -1) {
		int err = errno;
		close(fd);
		return err;
	}
	struct node *n;
	pthread_mutex_lock(&table_lock);
	for (n = root.next; n != &root; n = n->next) {
		if (n->ino == e->attr.st_ino && n->dev == e->attr.st_dev) break;
	}
	if (n != &root) {
		n->lookups++;
		pthread_mutex_unlock(&table_lock);
		close(fd);
	} else {
		n = calloc(1, sizeof(*n));
		if (!n) {
			pthread_mutex_unlock(&table_lock);
			close(fd);
			return ENOMEM;
		}
		n->fd = fd;
		n->ino = e->attr.st_ino;
		n->dev = e->attr.st_dev;
		n->lookups = 1;
		n->next = root.next;
		n->prev = &root;
		root.next->prev = n;
		root.next = n;
		pthread_mutex_unlock(&table_lock);
	}
	e->ino = (uintptr_t)n;
	return 0;
}

static void forget_one(fuse_ino_t ino, uint64_t count)
{
	struct node *n = node_of(ino);
	if (n == &root) return;
	pthread_mutex_lock(&table_lock);
	n->lookups -= count < n->lookups ? count : n->lookups;
	if (n->lookups == 0) {
		n->prev->next = n->next;
		n->next->prev = n->prev;
		pthread_mutex_unlock(&table_lock);
		close(n->fd);
		free(n);
		return;
	}
	pthread_mutex_unlock(&table_lock);
}

static void pt_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e;
	int err = do_lookup(parent, name, &e);
	if (err) fuse_reply_err(req, err);
	else fuse_reply_entry(req, &e);
}

static void pt_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	forget_one(ino, nlookup);
	fuse_reply_none(req);
}

static void pt_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *f)
{
	for (size_t i = 0; i < count; i++) forget_one(f[i].ino, f[i].nlookup);
	fuse_reply_none(req);
}

/* --- attributes --------------------------------------------------------------------------------------- */

static void pt_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	conn->max_write = MAX_IO;
	conn->max_background = 64;
	conn->congestion_threshold = 48;
	conn->want &= ~(unsigned)FUSE_CAP_AUTO_INVAL_DATA;
	conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
	if (conn->capable & FUSE_CAP_ASYNC_DIO) conn->want |= FUSE_CAP_ASYNC_DIO;
}

static void pt_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;
	int res = fi ? fstat(fi->fh, &st) : fstatat(fd_of(ino), "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
	if (res == -1) fuse_reply_err(req, errno);
	else fuse_reply_attr(req, &st, TIMEOUT);
}

static void pt_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int valid, struct fuse_file_info *fi)
{
	char p[64];
	int fd = fd_of(ino);
	proc_path(p, sizeof p, fd);
	if ((valid & FUSE_SET_ATTR_MODE) && (fi ? fchmod(fi->fh, attr->st_mode) : chmod(p, attr->st_mode)) == -1) goto err;
	if (valid & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
		uid_t uid = (valid & FUSE_SET_ATTR_UID) ? attr->st_uid : (uid_t)-1;
		gid_t gid = (valid & FUSE_SET_ATTR_GID) ? attr->st_gid : (gid_t)-1;
		if (fchownat(fd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == -1) goto err;
	}
	if ((valid & FUSE_SET_ATTR_SIZE) && (fi ? ftruncate(fi->fh, attr->st_size) : truncate(p, attr->st_size)) == -1) goto err;
	if (valid & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)) {
		struct timespec tv[2] = { { 0, UTIME_OMIT }, { 0, UTIME_OMIT } };
		if (valid & FUSE_SET_ATTR_ATIME_NOW) tv[0].tv_nsec = UTIME_NOW;
		else if (valid & FUSE_SET_ATTR_ATIME) tv[0] = attr->st_atim;
		if (valid & FUSE_SET_ATTR_MTIME_NOW) tv[1].tv_nsec = UTIME_NOW;
		else if (valid & FUSE_SET_ATTR_MTIME) tv[1] = attr->st_mtim;
		if ((fi ? futimens(fi->fh, tv) : utimensat(AT_FDCWD, p, tv, 0)) == -1) goto err;
	}
	pt_getattr(req, ino, fi);
	return;
err:
	fuse_reply_err(req, errno);
}

static void pt_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs s;
	if (fstatvfs(fd_of(ino), &s) == -1) fuse_reply_err(req, errno);
	else fuse_reply_statfs(req, &s);
}

/* --- namespace ---------------------------------------------------------------------------------------- */

static void reply_new_entry(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e;
	int err = do_lookup(parent, name, &e);
	if (err) fuse_reply_err(req, err);
	else fuse_reply_entry(req, &e);
}

static void pt_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	if (mkdirat(fd_of(parent), name, mode) == -1) fuse_reply_err(req, errno);
	else reply_new_entry(req, parent, name);
}

static void pt_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	if (mknodat(fd_of(parent), name, mode, rdev) == -1) fuse_reply_err(req, errno);
	else reply_new_entry(req, parent, name);
}

static void pt_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, unlinkat(fd_of(parent), name, 0) == -1 ? errno : 0);
}

static void pt_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, unlinkat(fd_of(parent), name, AT_REMOVEDIR) == -1 ? errno : 0);
}

static void pt_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent, const char *newname,
	unsigned int flags)
{
	if (flags) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	fuse_reply_err(req, renameat(fd_of(parent), name, fd_of(newparent), newname) == -1 ? errno : 0);
}

/* --- directories -------------------------------------------------------------------------------------- */

struct dir {
	DIR *dp;
	struct dirent *entry; /* read but not yet returned (did not fit) */
	off_t offset;
};

static void pt_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct dir *d = calloc(1, sizeof(*d));
	if (!d) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	int fd = openat(fd_of(ino), ".", O_RDONLY | O_DIRECTORY);
	if (fd == -1 || !(d->dp = fdopendir(fd))) {
		int err = errno;
		if (fd != -1) close(fd);
		free(d);
		fuse_reply_err(req, err);
		return;
	}
	fi->fh = (uintptr_t)d;
	fuse_reply_open(req, fi);
}

static void pt_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, struct fuse_file_info *fi)
{
	(void)ino;
	struct dir *d = (struct dir *)(uintptr_t)fi->fh;
	char *buf = malloc(size), *p = buf;
	size_t rem = size;
	int err = 0;
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (offset != d->offset) {
		seekdir(d->dp, offset);
		d->entry = NULL;
		d->offset = offset;
	}
	for (;;) {
		if (!d->entry) {
			errno = 0;
			d->entry = readdir(d->dp);
			if (!d->entry) {
				err = errno;
				break;
			}
		}
		struct stat st = { .st_ino = d->entry->d_ino, .st_mode = d->entry->d_type << 12 };
		size_t n = fuse_add_direntry(req, p, rem, d->entry->d_name, &st, d->entry->d_off);
		if (n > rem) break;
		p += n;
		rem -= n;
		d->offset = d->entry->d_off;
		d->entry = NULL;
	}
	if (err && rem == size) fuse_reply_err(req, err);
	else fuse_reply_buf(req, buf, size - rem);
	free(buf);
}

static void pt_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	struct dir *d = (struct dir *)(uintptr_t)fi->fh;
	closedir(d->dp);
	free(d);
	fuse_reply_err(req, 0);
}

/* --- files -------------------------------------------------------------------------------------------- */

/* O_DIRECT is the kernel's business (the backing file is read and written through its page cache, as the
   other references do); creation flags were handled by the kernel or by create. */
static int backing_flags(int flags) { return flags & ~(O_DIRECT | O_CREAT | O_EXCL | O_NOCTTY | O_NOFOLLOW); }

/* Direct I/O opens bypass the kernel's page cache of the FUSE file; see io_writev for the parallel flag. */
static void set_open_flags(struct fuse_file_info *fi, int flags)
{
	if (flags & O_DIRECT) fi->direct_io = 1;
}

static void pt_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, struct fuse_file_info *fi)
{
	int fd = openat(fd_of(parent), name, backing_flags(fi->flags) | O_CREAT, mode);
	if (fd == -1) {
		fuse_reply_err(req, errno);
		return;
	}
	struct fuse_entry_param e;
	int err = do_lookup(parent, name, &e);
	if (err) {
		close(fd);
		fuse_reply_err(req, err);
		return;
	}
	fi->fh = fd;
	set_open_flags(fi, fi->flags);
	fuse_reply_create(req, &e, fi);
}

static void pt_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	char p[64];
	proc_path(p, sizeof p, fd_of(ino));
	int fd = open(p, backing_flags(fi->flags));
	if (fd == -1) {
		fuse_reply_err(req, errno);
		return;
	}
	fi->fh = fd;
	set_open_flags(fi, fi->flags);
	fuse_reply_open(req, fi);
}

static void pt_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	close(fi->fh);
	fuse_reply_err(req, 0);
}

static void pt_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	fuse_reply_err(req, close(dup(fi->fh)) == -1 ? errno : 0);
}

static void pt_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)ino;
	fuse_reply_err(req, (datasync ? fdatasync(fi->fh) : fsync(fi->fh)) == -1 ? errno : 0);
}

/* One read buffer per worker thread: no allocation per request. */
static __thread char *read_buf;

static void pt_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	(void)ino;
	if (!read_buf && !(read_buf = malloc(MAX_IO))) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (size > MAX_IO) size = MAX_IO;
	ssize_t n = pread(fi->fh, read_buf, size, off);
	if (n == -1) fuse_reply_err(req, errno);
	else fuse_reply_buf(req, read_buf, n);
}

static void pt_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
	(void)ino;
	ssize_t n = pwrite(fi->fh, buf, size, off);
	if (n == -1) fuse_reply_err(req, errno);
	else fuse_reply_write(req, n);
}

static void pt_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len, struct fuse_file_info *fi)
{
	(void)ino;
	fuse_reply_err(req, fallocate(fi->fh, mode, off, len) == -1 ? errno : 0);
}

static const struct fuse_lowlevel_ops ops = {
	.init = pt_init,
	.lookup = pt_lookup,
	.forget = pt_forget,
	.forget_multi = pt_forget_multi,
	.getattr = pt_getattr,
	.setattr = pt_setattr,
	.statfs = pt_statfs,
	.mkdir = pt_mkdir,
	.mknod = pt_mknod,
	.unlink = pt_unlink,
	.rmdir = pt_rmdir,
	.rename = pt_rename,
	.opendir = pt_opendir,
	.readdir = pt_readdir,
	.releasedir = pt_releasedir,
	.create = pt_create,
	.open = pt_open,
	.release = pt_release,
	.flush = pt_flush,
	.fsync = pt_fsync,
	.read = pt_read,
	.write = pt_write,
	.fallocate = pt_fallocate,
};

static void usage(void)
{
	fprintf(stderr, "usage: passthrough_ll MOUNTPOINT BACKINGDIR [--threads N] [--no-parallel-direct-writes]\n");
	exit(2);
}

int main(int argc, char *argv[])
{
	const char *mnt = NULL, *backing = NULL;
	unsigned threads = 16;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = (unsigned)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--no-parallel-direct-writes")) parallel_direct_writes = 0;
		else if (argv[i][0] == '-') usage();
		else if (!mnt) mnt = argv[i];
		else if (!backing) backing = argv[i];
		else usage();
	}
	if (!mnt || !backing || threads < 1) usage();

	root.fd = open(backing, O_PATH | O_DIRECTORY);
	if (root.fd == -1) {
		fprintf(stderr, "passthrough_ll: %s: %s\n", backing, strerror(errno));
		return 1;
	}
	char *fargv[] = { argv[0], "-o", "allow_other,default_permissions,fsname=c-passthrough,subtype=passthrough_ll", NULL };
	struct fuse_args args = FUSE_ARGS_INIT(3, fargv);
	struct fuse_session *se = fuse_session_new(&args, &ops, sizeof(ops), NULL);
	if (!se) return 1;
	int rc = 1;
	if (fuse_set_signal_handlers(se) != 0) goto out_session;
	if (fuse_session_mount(se, mnt) != 0) goto out_signals;
	/* Same descriptor, our read/writev around it (see io_writev). */
	const struct fuse_custom_io io = { .read = io_read, .writev = io_writev };
	if (fuse_session_custom_io(se, &io, fuse_session_fd(se)) != 0) goto out_unmount;

	struct fuse_loop_config *cfg = fuse_loop_cfg_create();
	fuse_loop_cfg_set_clone_fd(cfg, 0);
	fuse_loop_cfg_set_max_threads(cfg, threads);
	fuse_loop_cfg_set_idle_threads(cfg, threads); /* keep them: creating and ending threads costs more */
	fprintf(stderr, "passthrough_ll: %s mounted at %s (libfuse %d, up to %u threads, parallel direct writes %s)\n",
		backing, mnt, fuse_version(), threads, parallel_direct_writes ? "on" : "off");
	rc = fuse_session_loop_mt(se, cfg) < 0 ? 1 : 0; /* a positive value is the signal that ended it */
	fuse_loop_cfg_destroy(cfg);
	fprintf(stderr, "passthrough_ll: session ended, unmounting\n");
out_unmount:
	fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
out_session:
	fuse_session_destroy(se);
	fuse_opt_free_args(&args);
	return rc;
}
