# nbdsh-style checks (libnbd's Python binding) of every handshake option and command the vpoolfs NBD
# server serves, errors included. Usage: nbd_options.py SOCKET EXPORT(16 MiB vDisk) TEMPLATE_EXPORT
# Prints "ok" at the end; any failed assertion exits non-zero with its message.
import errno
import nbd
import sys

sock, name, template = sys.argv[1], sys.argv[2], sys.argv[3]
MiB = 1 << 20


def expect_error(what, fn, errnum=None):
    try:
        fn()
    except nbd.Error as e:
        if errnum is not None:
            assert e.errnum == errnum, (what, 'errnum', e.errnum, 'expected', errnum, e.string)
        return e
    raise AssertionError(what + ': no error')


# --- options, in negotiation mode ---
h = nbd.NBD()
h.set_opt_mode(True)
h.connect_unix(sock)
names = []
h.opt_list(lambda n, d: names.append(n))
assert name in names and template in names, ('LIST', names)
h.set_export_name(name)
h.opt_info()
assert h.get_size() == 16 * MiB, ('INFO size', h.get_size())
assert h.can_multi_conn() and h.can_flush() and h.can_fua() and h.can_zero(), 'INFO flags'
assert not h.can_trim(), 'TRIM must not be advertised before the volume has discard'
assert h.get_block_size(nbd.SIZE_MAXIMUM) == 32 * MiB and h.get_block_size(nbd.SIZE_PREFERRED) == 4096
ctxs = []
h.opt_list_meta_context(lambda c: ctxs.append(c))
assert ctxs == ['base:allocation'], ('LIST_META_CONTEXT', ctxs)
h.set_export_name('no/such/disk')
expect_error('INFO of an unknown export', h.opt_info, errno.ENOENT)  # NBD_REP_ERR_UNKNOWN
h.set_export_name('../etc/passwd')
expect_error('INFO of a path with ..', h.opt_info)
h.set_export_name('')
expect_error('INFO of the empty (default) export', h.opt_info)
h.opt_abort()

# GO with base:allocation after the failed attempts above (a fresh handle: ABORT ended the other)
h = nbd.NBD()
h.set_opt_mode(True)
h.add_meta_context('base:allocation')
h.connect_unix(sock)
h.set_export_name('no/such/disk')
expect_error('GO of an unknown export', h.opt_go)
h.set_export_name(name)
h.opt_go()
assert h.get_structured_replies_negotiated()
assert h.can_meta_context('base:allocation')

# --- commands ---
h.pwrite(b'\xaa' * 8192, 4096, nbd.CMD_FLAG_FUA)
assert h.pread(8192, 4096) == b'\xaa' * 8192
h.pwrite(b'xyz', 100001)  # unaligned: the vDisk does the read-modify-write
assert h.pread(5, 100000) == b'\x00xyz\x00'
h.flush()


def extents(off, count, flags=0):
    got = []
    def cb(ctx, o, ents, err):
        got.append((ctx, o, list(ents)))
        return 0
    h.block_status(count, off, cb, flags)
    assert len(got) == 1 and got[0][0] == 'base:allocation', got
    return got[0][2]


# written clusters are data (0), the rest hole|zero (3)
ents = extents(0, 1 * MiB)
pos, layout = 0, []
for i in range(0, len(ents), 2):
    layout.append((pos, ents[i], ents[i + 1]))
    pos += ents[i]
assert pos == 1 * MiB, ('extents cover the range', pos)
assert (0, 4096, 3) in layout and (4096, 8192, 0) in layout, layout
one = extents(0, 1 * MiB, nbd.CMD_FLAG_REQ_ONE)
assert one == [4096, 3], ('REQ_ONE', one)

# WRITE_ZEROES: without NO_HOLE a hole stays a hole and data reads zero; with NO_HOLE it is allocated
h.zero(4096, 4096)
assert h.pread(8192, 4096) == b'\x00' * 4096 + b'\xaa' * 4096
h.zero(65536, 2 * MiB)
assert extents(2 * MiB, 65536) == [65536, 3], 'zeroing a hole keeps it a hole'
h.zero(65536, 3 * MiB, nbd.CMD_FLAG_NO_HOLE | nbd.CMD_FLAG_FUA)
assert extents(3 * MiB, 65536) == [65536, 0], 'NO_HOLE allocates'
assert h.pread(65536, 3 * MiB) == b'\x00' * 65536

# several requests in flight, completed in whatever order
bufs = []
for i in range(64):
    b = nbd.Buffer.from_bytearray(bytearray([i]) * 4096)
    bufs.append(b)
    h.aio_pwrite(b, 8 * MiB + i * 4096)
while h.aio_in_flight() > 0:
    h.poll(-1)
reads = [nbd.Buffer(4096) for _ in range(64)]
for i, b in enumerate(reads):
    h.aio_pread(b, 8 * MiB + i * 4096)
while h.aio_in_flight() > 0:
    h.poll(-1)
for i, b in enumerate(reads):
    assert b.to_bytearray() == bytearray([i]) * 4096, ('aio read', i)

# errors the server answers (libnbd's own checks off so that the requests reach it)
h.set_strict_mode(0)
expect_error('read past the end', lambda: h.pread(8192, 16 * MiB - 4096), errno.EINVAL)
expect_error('write past the end', lambda: h.pwrite(b'x' * 8192, 16 * MiB - 4096), errno.ENOSPC)
expect_error('zero past the end', lambda: h.zero(8192, 16 * MiB - 4096), errno.ENOSPC)
expect_error('trim (not advertised)', lambda: h.trim(4096, 0), errno.EINVAL)
expect_error('a flag not allowed on read', lambda: h.pread(4096, 0, nbd.CMD_FLAG_NO_HOLE), errno.EINVAL)
assert h.pread(4096, 8 * MiB) == b'\x00' * 4096, 'the connection goes on after refused requests'
h.shutdown()

# --- without structured replies: simple replies, no block status ---
h = nbd.NBD()
h.set_request_structured_replies(False)
h.set_export_name(name)
h.connect_unix(sock)
assert not h.get_structured_replies_negotiated()
assert h.pread(4096, 8 * MiB + 4096) == b'\x01' * 4096
h.set_strict_mode(0)
expect_error('simple reply error', lambda: h.pread(4096, 16 * MiB), errno.EINVAL)
h.shutdown()

# --- a template is read-only ---
h = nbd.NBD()
h.connect_uri('nbd+unix:///%s?socket=%s' % (template, sock))
assert h.is_read_only()
h.set_strict_mode(0)
expect_error('write to a template', lambda: h.pwrite(b'x' * 4096, 0), errno.EPERM)
h.shutdown()
print('ok')
