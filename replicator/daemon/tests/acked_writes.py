#!/usr/bin/python3
"""Numbered writes whose acknowledgements are logged, and the check that every one is there.

  acked_writes.py write URI LOG [QD]   write block 0, 1, 2, ... (each once) with QD requests in
                                       flight; append the number of every block whose write the
                                       server acknowledged to LOG (flushed at once) until the
                                       device is full or the connection breaks
  acked_writes.py check URI LOG        read every block named in LOG; exit 1 naming the first
                                       whose content is not that write's

Block N holds "tandem-ack N\n" repeated, so a block that is missing, stale or misplaced is
caught. Needs Debian's python3-libnbd (run with /usr/bin/python3).
"""

import sys

import nbd

BLOCK = 4096


def content(n):
    line = b"tandem-ack %010d\n" % n
    return (line * (BLOCK // len(line) + 1))[:BLOCK]


def write(uri, log_path, qd):
    h = nbd.NBD()
    h.connect_uri(uri)
    blocks = h.get_size() // BLOCK
    log = open(log_path, "a", buffering=1)
    in_flight = {}  # cookie -> (block, buffer)
    nxt = 0
    try:
        while nxt < blocks or in_flight:
            while nxt < blocks and len(in_flight) < qd:
                buf = nbd.Buffer.from_bytearray(bytearray(content(nxt)))
                cookie = h.aio_pwrite(buf, nxt * BLOCK)
                in_flight[cookie] = (nxt, buf)
                nxt += 1
            h.poll(-1)
            for cookie in list(in_flight):
                if h.aio_command_completed(cookie):
                    block, _ = in_flight.pop(cookie)
                    log.write("%d\n" % block)
    except nbd.Error as e:
        print("writer stopped: %s" % e, file=sys.stderr)
    log.close()


def check(uri, log_path):
    h = nbd.NBD()
    h.connect_uri(uri)
    acked = [int(x) for x in open(log_path).read().split()]
    for n in acked:
        got = h.pread(BLOCK, n * BLOCK)
        if got != content(n):
            print("acknowledged write of block %d is missing: found %r" % (n, got[:24]))
            sys.exit(1)
    print("%d acknowledged writes present" % len(acked))


if __name__ == "__main__":
    if sys.argv[1] == "write":
        write(sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 8)
    elif sys.argv[1] == "check":
        check(sys.argv[2], sys.argv[3])
    else:
        sys.exit("usage: acked_writes.py write|check URI LOG [QD]")
