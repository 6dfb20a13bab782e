#!/usr/bin/env python3
"""tftp_get.py: a TFTP read client with blksize and windowsize (RFC 2348, 7440) and simulated
packet loss, for the seed tests (curl's TFTP client has no windowsize).

usage: tftp_get.py HOST FILE OUT [--port N] [--blksize N] [--windowsize N] [--timeout S]
                   [--drop B,B,...] [--mode MODE]

--drop lists block numbers (counted from 1, before wrapping) whose first arrival is ignored,
as if the network lost them. Prints "ok bytes=N blocks=N oack=..." and exits 0, or prints
the server's ERROR and exits 1; exits 2 when the server stops answering.
"""
import argparse
import socket
import struct
import sys

RRQ, DATA, ACK, ERROR, OACK = 1, 3, 4, 5, 6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("file")
    ap.add_argument("out")
    ap.add_argument("--port", type=int, default=69)
    ap.add_argument("--blksize", type=int)
    ap.add_argument("--windowsize", type=int)
    ap.add_argument("--timeout", type=float, default=3.0)
    ap.add_argument("--drop", default="")
    ap.add_argument("--mode", default="octet")
    a = ap.parse_args()
    drop = {int(x) for x in a.drop.split(",") if x}

    opts = b""
    if a.blksize:
        opts += b"blksize\0%d\0" % a.blksize
    if a.windowsize:
        opts += b"windowsize\0%d\0" % a.windowsize
    opts += b"tsize\0" b"0\0"
    rrq = struct.pack("!H", RRQ) + a.file.encode() + b"\0" + a.mode.encode() + b"\0" + opts

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(a.timeout)
    s.sendto(rrq, (a.host, a.port))
    server = None
    blksize, window = 512, 1
    last = 0            # highest block received in order
    in_window = 0       # blocks received since the last ACK
    gap_acked = False   # an ACK for the current gap was sent
    oack = {}
    retries = 0
    out = open(a.out, "wb")

    def send_ack(n):
        s.sendto(struct.pack("!HH", ACK, n & 0xFFFF), server)

    while True:
        try:
            pkt, peer = s.recvfrom(65536 + 4)
        except socket.timeout:
            retries += 1
            if retries > 8:
                print("timeout: server stopped answering", file=sys.stderr)
                return 2
            if server is None:
                s.sendto(rrq, (a.host, a.port))
            else:
                send_ack(last)
            continue
        if server is None:
            server = peer           # the transfer's TID (RFC 1350 section 4)
        elif peer != server:
            continue
        retries = 0
        op = struct.unpack("!H", pkt[:2])[0]
        if op == ERROR:
            code = struct.unpack("!H", pkt[2:4])[0]
            print("error code=%d message=%s" % (code, pkt[4:].rstrip(b"\0").decode(errors="replace")))
            return 1
        if op == OACK:
            if last:
                continue
            fields = pkt[2:].split(b"\0")
            for k, v in zip(fields[0::2], fields[1::2]):
                oack[k.decode().lower()] = int(v)
            blksize = oack.get("blksize", 512)
            window = oack.get("windowsize", 1)
            send_ack(0)
            continue
        if op != DATA:
            continue
        wire = struct.unpack("!H", pkt[2:4])[0]
        expected = last + 1
        if wire != expected & 0xFFFF:
            # A duplicate or a gap: acknowledge what arrived in order, once per gap (RFC 7440).
            if not gap_acked:
                send_ack(last)
                gap_acked = True
                in_window = 0
            continue
        if expected in drop:
            drop.discard(expected)
            continue
        gap_acked = False
        data = pkt[4:]
        out.write(data)
        last = expected
        in_window += 1
        if len(data) < blksize:
            send_ack(last)
            break
        if in_window >= window:
            send_ack(last)
            in_window = 0
    total = out.tell()
    out.close()
    print("ok bytes=%d blocks=%d oack=%s" % (total, last,
                                             ",".join("%s:%d" % kv for kv in sorted(oack.items()))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
