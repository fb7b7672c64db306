"""A delaying TCP tap for the bench: real-network round trips on loopback.

`Tap(upstream, rtt_ms)` listens on 127.0.0.1 (a free port) and forwards every connection to
`upstream` ("host:port"), holding each chunk of bytes for half the round-trip time in each
direction before passing it on. It is a delay line, not a queue: chunks keep their order and
their spacing, so a stream's rate is not capped by the delay (only the bytes in flight are
bounded, `WINDOW` per direction, as a TCP window is), and a request/answer exchange costs one
round trip, as it does across a network. There is no bandwidth limit and no loss.

`Tap(..., mongo=True)` also reads the MongoDB wire protocol of what passes (OP_MSG, without
changing a byte) and counts per command name: the messages, the statements they carry (the
documents of an insert, the statements of an update or delete), the bytes the client sent, the
bytes the server answered, and the seconds from each request to its answer (with no delay, the
server's time on it, its queue included). That is how the bench tells the database's work by command on any
server, without the server's own counters.

The taps run in one asyncio loop in a background thread of the bench process (`Taps`), so their
CPU is neither the tool's nor curl's: both go through the same taps.

Profiles (round trips in milliseconds; `bench/run --only net --net-profiles ...`):

    lan    database 0.5, S3 2, files 2
    cloud  database 1, S3 10, files 20
    far    database 1, S3 10, files 80
"""
import asyncio
import collections
import struct
import threading
import time

PROFILES = {
    "none": dict(db=0.0, s3=0.0, files=0.0),
    "lan": dict(db=0.5, s3=2.0, files=2.0),
    "cloud": dict(db=1.0, s3=10.0, files=20.0),
    "far": dict(db=1.0, s3=10.0, files=80.0),
}

CHUNK = 256 << 10
WINDOW = 64  # chunks in flight per direction (16 MiB)
OP_MSG = 2013


class Counts:
    """Per-command counters of one tap (all connections)."""

    def __init__(self):
        self.by_cmd = collections.defaultdict(lambda: dict(n=0, stmts=0, sent=0, answered=0,
                                                          secs=0.0))

    def snapshot(self):
        return {k: dict(v) for k, v in self.by_cmd.items()}


def delta(after, before):
    """Counts of a run: a snapshot less an earlier one."""
    out = {}
    for cmd, v in after.items():
        b = before.get(cmd, {})
        d = {k: v[k] - b.get(k, 0) for k in v}
        if any(d.values()):
            out[cmd] = d
    return out


def _first_key(doc):
    """The first key of a BSON document (the command's name), with the collection it names for
    the commands that read or write documents (`update _FileMigration`)."""
    end = doc.index(b"\0", 5)
    cmd = doc[5:end].decode("utf-8", "replace")
    if doc[4] == 0x02 and cmd in ("insert", "update", "delete", "find", "findAndModify",
                                  "aggregate", "count"):
        n = struct.unpack_from("<i", doc, end + 1)[0]
        coll = doc[end + 5:end + 4 + n].decode("utf-8", "replace")
        return f"{cmd} {coll}"
    return cmd


def _statements(doc, cmd):
    """Statements an OP_MSG's body carries inline (when not sent as a document sequence)."""
    field = {"insert": "documents", "update": "updates", "delete": "deletes"}.get(cmd.split()[0])
    if field is None:
        return 0
    import bson  # pymongo's, only when a batch is inline

    try:
        return len(bson.decode(doc).get(field) or [])
    except Exception:  # noqa: BLE001 - counting must never break the forwarding
        return 0


class WireReader:
    """Splits one direction's byte stream into MongoDB messages and counts them."""

    def __init__(self, counts, pending, client_side):
        self.buf = bytearray()
        self.counts, self.pending, self.client_side = counts, pending, client_side

    def feed(self, data):
        self.buf += data
        while len(self.buf) >= 16:
            length, req_id, resp_to, op = struct.unpack_from("<iiii", self.buf)
            if length < 16 or len(self.buf) < length:
                return
            msg = bytes(self.buf[:length])
            del self.buf[:length]
            if self.client_side:
                self.request(msg, req_id, op)
            else:
                cmd, t0 = self.pending.pop(resp_to, (None, 0.0))
                if cmd is not None:
                    c = self.counts.by_cmd[cmd]
                    c["answered"] += length
                    c["secs"] += time.monotonic() - t0

    def request(self, msg, req_id, op):
        if op != OP_MSG:
            cmd, stmts = f"op{op}", 0
        else:
            pos, cmd, stmts, body = 20, "?", 0, None
            flags = struct.unpack_from("<I", msg, 16)[0]
            end = len(msg) - (4 if flags & 1 else 0)
            while pos < end:
                kind = msg[pos]
                pos += 1
                size = struct.unpack_from("<i", msg, pos)[0]
                if kind == 0:
                    body = msg[pos:pos + size]
                    cmd = _first_key(body)
                else:  # a document sequence: identifier, then documents
                    seq_end = pos + size
                    p = msg.index(b"\0", pos + 4) + 1
                    while p < seq_end:
                        p += struct.unpack_from("<i", msg, p)[0]
                        stmts += 1
                pos += size
            if stmts == 0 and body is not None:
                stmts = _statements(body, cmd)
        c = self.counts.by_cmd[cmd]
        c["n"] += 1
        c["stmts"] += stmts
        c["sent"] += len(msg)
        self.pending[req_id] = (cmd, time.monotonic())


class Tap:
    def __init__(self, upstream, rtt_ms, mongo=False):
        host, _, port = upstream.rpartition(":")
        self.up_host, self.up_port = host, int(port)
        self.delay = rtt_ms / 2000.0
        self.mongo = mongo
        self.counts = Counts()
        self.server = None
        self.port = None

    async def start(self):
        self.server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _conn(self, c_reader, c_writer):
        try:
            u_reader, u_writer = await asyncio.open_connection(self.up_host, self.up_port)
        except OSError:
            c_writer.close()
            return
        # A new connection's first bytes wait one round trip more: the TCP handshake a real
        # network costs before a client may send (connection reuse is worth what it is there).
        opened = time.monotonic() + 2 * self.delay
        pending = {}
        up = WireReader(self.counts, pending, True) if self.mongo else None
        down = WireReader(self.counts, pending, False) if self.mongo else None
        await asyncio.gather(self._pipe(c_reader, u_writer, up, opened),
                             self._pipe(u_reader, c_writer, down, 0.0), return_exceptions=True)
        for w in (c_writer, u_writer):
            w.close()

    async def _pipe(self, reader, writer, wire, not_before):
        """One direction: read, stamp, and let a writer pass each chunk on when it is due."""
        line = asyncio.Queue(WINDOW)

        async def deliver():
            while True:
                due, data = await line.get()
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if data is None:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()

        out = asyncio.ensure_future(deliver())
        try:
            while True:
                data = await reader.read(CHUNK)
                if wire is not None and data:
                    wire.feed(data)
                await line.put((max(time.monotonic(), not_before) + self.delay, data or None))
                if not data:
                    break
            await out
        except (ConnectionError, OSError):
            out.cancel()
            writer.close()
            raise


class Taps:
    """Taps in a background asyncio loop, started and stopped from the bench's thread."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.taps = []

    def add(self, upstream, rtt_ms, mongo=False):
        tap = Tap(upstream, rtt_ms, mongo)
        asyncio.run_coroutine_threadsafe(tap.start(), self.loop).result()
        self.taps.append(tap)
        return tap

    def snapshot(self, tap):
        return asyncio.run_coroutine_threadsafe(_snap(tap), self.loop).result()

    def close(self):
        async def stop():
            for t in self.taps:
                t.server.close()
        asyncio.run_coroutine_threadsafe(stop(), self.loop).result()
        self.taps = []


async def _snap(tap):
    return tap.counts.snapshot()
