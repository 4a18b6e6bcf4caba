# Model-based check of the vpoolfs NBD server: random operations on two connections to one export
# (multi-conn) against a plain bytearray, with batches of requests in flight at once (disjoint ranges, so
# any completion order is right). Usage: nbd_model.py SOCKET EXPORT SIZE SEED ROUNDS MOUNT_FILE
# Prints "ok OPS" at the end; a mismatch exits non-zero naming the seed, the round and the range.
import nbd
import os
import random
import sys

sock, name, size, seed, rounds, mount_file = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
rnd = random.Random(seed)
ref = bytearray(size)
conns = []
for _ in range(2):
    h = nbd.NBD()
    h.add_meta_context('base:allocation')
    h.set_export_name(name)
    h.connect_unix(sock)
    conns.append(h)
ops = 0


def span():
    # mostly small and cluster-sized, sometimes unaligned or large
    kind = rnd.random()
    if kind < 0.5:
        length = 4096 * rnd.randint(1, 4)
        off = 4096 * rnd.randrange(size // 4096 - 4)
    elif kind < 0.8:
        length = rnd.randint(1, 20000)
        off = rnd.randrange(size - length)
    else:
        length = rnd.randint(1, 8) * 65536
        off = rnd.randrange(size - length)
    return off, length


def check(h, off, length, where):
    got = h.pread(length, off)
    if got != ref[off:off + length]:
        first = next(i for i in range(length) if got[i] != ref[off + i])
        raise AssertionError('seed %d: %s: read at %d+%d differs at byte %d' % (seed, where, off, length, off + first))


for r in range(rounds):
    h = conns[rnd.randrange(2)]
    op = rnd.random()
    if op < 0.45:
        off, length = span()
        data = rnd.randbytes(length)
        h.pwrite(data, off, nbd.CMD_FLAG_FUA if rnd.random() < 0.1 else 0)
        ref[off:off + length] = data
    elif op < 0.55:
        off, length = span()
        h.zero(length, off, nbd.CMD_FLAG_NO_HOLE if rnd.random() < 0.5 else 0)
        ref[off:off + length] = bytes(length)
    elif op < 0.6:
        h.flush()
    elif op < 0.7:
        # a batch in flight at once on one connection, disjoint 4 KiB slots
        slots = rnd.sample(range(size // 4096), 16)
        bufs = []
        for s in slots:
            data = rnd.randbytes(4096)
            ref[s * 4096:(s + 1) * 4096] = data
            b = nbd.Buffer.from_bytearray(bytearray(data))
            bufs.append(b)
            h.aio_pwrite(b, s * 4096)
        while h.aio_in_flight() > 0:
            h.poll(-1)
        reads = [(s, nbd.Buffer(4096)) for s in slots]
        for s, b in reads:
            h.aio_pread(b, s * 4096)
        while h.aio_in_flight() > 0:
            h.poll(-1)
        for s, b in reads:
            if b.to_bytearray() != ref[s * 4096:(s + 1) * 4096]:
                raise AssertionError('seed %d round %d: aio read of slot %d differs' % (seed, r, s))
    elif op < 0.8:
        # block status: what it calls a hole reads as zeros in the model
        off, length = span()
        got = []

        def cb(ctx, o, ents, err):
            got.append(list(ents))
            return 0
        h.block_status(length, off, cb)
        pos = off
        for i in range(0, len(got[0]), 2):
            ln, fl = got[0][i], got[0][i + 1]
            if fl & 1:
                end = min(pos + ln, off + length)
                if any(ref[pos:end]):
                    raise AssertionError('seed %d round %d: extent %d+%d reported as a hole holds data' % (seed, r, pos, ln))
            pos += ln
    else:
        off, length = span()
        check(h, off, length, 'round %d' % r)
    ops += 1

for h in conns:
    h.flush()
for off in range(0, size, 1 << 20):
    check(conns[0], off, min(1 << 20, size - off), 'final')
# and the mount, through a fresh open, sees the same bytes
fd = os.open(mount_file, os.O_RDONLY)
whole = os.pread(fd, size, 0)
os.close(fd)
if whole != ref:
    first = next(i for i in range(size) if whole[i] != ref[i])
    raise AssertionError('seed %d: the mount differs from the model at byte %d' % (seed, first))
for h in conns:
    h.shutdown()
print('ok', ops)
