# Acknowledged writes through NBD, for the kill -9 tests. Usage:
#   nbd_acked.py write SOCKET EXPORT BLOCKS   writes block i (its number + bytes derived from it) at a
#                                             spread-out slot, then FLUSH, then prints i; until BLOCKS or an error
#   nbd_acked.py check SOCKET EXPORT BLOCKS < acks   every acked block i reads back exactly; prints "ok N"
import hashlib
import nbd
import sys

mode, sock, name, blocks = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
BS = 4096


def block(i):
    return ((b'%08d' % i) + hashlib.sha256(b'%d' % i).digest() * 128)[:BS]


def slot(i):
    return (i * 7919 % blocks) * BS


h = nbd.NBD()
h.set_export_name(name)
h.connect_unix(sock)
if mode == 'write':
    for i in range(blocks):
        try:
            h.pwrite(block(i), slot(i), nbd.CMD_FLAG_FUA if i % 3 == 0 else 0)
            if i % 3 != 0:
                h.flush()
        except nbd.Error as e:
            sys.stderr.write('writer stopped: %s\n' % e)
            break
        print(i, flush=True)
else:
    acked = [int(x) for x in sys.stdin.read().split()]
    bad = [i for i in acked if h.pread(BS, slot(i)) != block(i)]
    if bad:
        print('missing or wrong: %d of %d acked blocks, first %s' % (len(bad), len(acked), bad[:10]))
        sys.exit(1)
    print('ok', len(acked))
