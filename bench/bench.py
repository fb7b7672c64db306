"""The side-by-side benchmark behind bench/run (which starts the services and builds first).

Every scenario runs the tool (release build) and its baseline on the same data in the same
invocation, REPS times each, and reports medians: wall time, files/s, MB/s (10^6 bytes), peak RSS
(GNU time's %M of the measured process), the CPU the process and the test MongoDB server used,
the machine's load average when the runs started (other work on the machine disturbs timings),
and the ratio to the baseline. Raw results are appended to OUT/results.jsonl; the table goes to
stdout (and OUT/table.md, with the date and the machine).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from urllib.parse import quote

import pymongo

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import seed  # noqa: E402

ENV = os.environ
MONGO = ENV["PFM_TEST_MONGO_URI"]
HTTP_URL = ENV["PFM_TEST_HTTP_URL"]
HTTP_ROOT = ENV["PFM_TEST_HTTP_ROOT"]
S3 = ENV["PFM_TEST_S3_ENDPOINT"]
GCS = ENV["PFM_TEST_GCS_ENDPOINT"]
FILE_KEY = "benchKey"
MB = 1e6
TIME = "/usr/bin/time"


def db_uri(database, mongo=MONGO):
    hosts, _, query = mongo.partition("/?")
    return f"{hosts.rstrip('/')}/{database}?{query}"


class Bench:
    def __init__(self, a):
        self.a = a
        self.bin = a.bin
        self.examples = a.examples
        self.out = a.out
        os.makedirs(self.out, exist_ok=True)
        self.results = open(os.path.join(self.out, "results.jsonl"), "a")
        self.rows = []  # table rows
        self.last_db_cpu = self.last_srv_cpu = self.last_cpu = self.last_load = 0.0
        self.client = pymongo.MongoClient(MONGO)
        self.mongo = MONGO
        self.fresh_dir, self.discard = fresh_dir, discard

    # -- running and measuring ------------------------------------------------------------

    def run(self, argv, stdout=subprocess.DEVNULL, ok=(0,)):
        """Run argv; return (wall seconds, peak RSS KiB, stdout text if captured).

        The peak RSS comes from /usr/bin/time, not from our own wait4: a child forked from this
        Python process keeps Python's ~30 MiB high-water mark across exec (Linux carries
        ru_maxrss over), which would put a floor under every figure. time(1) is tiny, and the
        process it forks is the measured one."""
        cap = stdout == subprocess.PIPE
        cpu0, srv0 = self.db_cpu(), self.servers_cpu()
        self.last_load = loadavg()
        with tempfile.TemporaryFile() as err, tempfile.NamedTemporaryFile("r") as rss:
            t0 = time.monotonic()
            p = subprocess.Popen([TIME, "-f", "%U %S %M", "-o", rss.name, *argv],
                                 stdout=stdout, stderr=err)
            out = p.stdout.read().decode() if cap else ""
            code = p.wait()
            wall = time.monotonic() - t0
            if code not in ok:
                err.seek(0)
                sys.exit(f"bench: {' '.join(argv)} exited {code}\n"
                         f"{err.read().decode(errors='replace')[-3000:]}")
            # The last line is ours; a killed child makes time(1) print a line before it.
            fields = (rss.read().splitlines() or [""])[-1].split()
            try:
                self.last_cpu = float(fields[0]) + float(fields[1])
                kib = int(fields[2])
            except (IndexError, ValueError):
                self.last_cpu, kib = 0.0, 0
        self.last_db_cpu = self.db_cpu() - cpu0
        self.last_srv_cpu = self.servers_cpu() - srv0
        return wall, kib, out

    def db_cpu(self):
        """CPU seconds the MongoDB server has used so far. Tells how much of a run the test
        server itself was busy (with everything else that uses it meanwhile).
        PFM_BENCH_MONGO_PID names the server's process when it is not the test services' own
        (a second server measured beside them)."""
        pid = ENV.get("PFM_BENCH_MONGO_PID")
        return proc_cpu(pid) if pid else service_cpu("mongo")

    def servers_cpu(self):
        """CPU seconds the other test servers (S3, GCS, nginx and its workers) have used."""
        return sum(service_cpu(s) for s in ("s3", "gcs", "http"))

    def requests(self):
        """Requests the server has answered (`network.numRequests`): round trips, where
        `opcounters` would count every document of a batch."""
        return int(self.client.admin.command("serverStatus")["network"]["numRequests"])

    def oplog_ts(self):
        """The newest entry of the server's oplog (SecantusDB keeps one, as a replica set's
        primary does), or None. Sorted by `ts`, not `$natural`: secantusd-rs ignores a `$natural`
        sort and answers the oldest entry, which counted earlier runs' writes as this one's."""
        last = self.client.local["oplog.rs"].find_one({}, {"ts": 1}, sort=[("ts", -1)])
        return last and last["ts"]

    def record(self, scenario, variant, **kv):
        kv.setdefault("db_cpu", self.last_db_cpu)
        kv.setdefault("cpu", self.last_cpu)
        kv.setdefault("srv_cpu", self.last_srv_cpu)
        kv.setdefault("load", self.last_load)
        kv.update(scenario=scenario, variant=variant, t=time.time())
        self.results.write(json.dumps(kv) + "\n")
        self.results.flush()
        return kv

    # -- building blocks ------------------------------------------------------------------

    def config(self, name, database, dest, set_, concurrency, page_size=None, urls=None):
        """The tool's config for one scenario. `urls` (mongo, http, s3) points it at other
        addresses of the same servers: the delaying taps of the net scenario."""
        urls = {"mongo": MONGO, "http": HTTP_URL, "s3": S3, **(urls or {})}
        lines = [
            "[mongo]", f'uri = "{db_uri(database, urls["mongo"])}"',
            *([f"page_size = {page_size}"] if page_size else []),
            "[parse]", 'app_id = "benchApp"', f'file_key = "{FILE_KEY}"',
            'public_server_url = "http://127.0.0.1:1337/parse"',
            "[source.hosted]", 'type = "http"',
            f'tfss_base_url = "{urls["http"]}/bench/{set_}/tfss/{{file_key}}/"',
            f'legacy_base_url = "{urls["http"]}/bench/{set_}/tfss/{{file_key}}/"',
            "[destination]",
        ]
        kind = dest[0]
        if kind == "fs":
            lines += ['type = "fs"', f'path = "{dest[1]}"', 'encryption = "none"']
        elif kind == "s3":
            lines += ['type = "s3"', f'bucket = "{dest[1]}"', f'endpoint = "{urls["s3"]}"',
                      'region = "us-east-1"', 'access_key_id = "test"',
                      'secret_access_key = "testsecret"']
        elif kind == "gcs":
            lines += ['type = "gcs"', f'bucket = "{dest[1]}"', f'endpoint = "{GCS}"',
                      "anonymous = true"]
        elif kind == "gridfs":
            lines += ['type = "gridfs"', 'encryption = "none"']
        lines += ["[run]", f"concurrency = {concurrency}"]
        path = os.path.join(self.out, f"{name}.toml")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def migrate(self, cfg, *flags, copied=None, rewritten=None):
        """One migrate run; returns its measurement (wall, RSS, summary, round trips). A run
        that did not copy `copied` files or rewrite `rewritten` references stops the bench: a
        timing of a run that did something else would be meaningless."""
        since = self.oplog_ts()
        ops = self.requests()
        with OplogCounter(self.client, since) as oplog:
            wall, rss, out = self.run(
                [self.bin, "-c", cfg, "-q", "--progress", "never", "migrate", "--yes",
                 "--output", "jsonl", *flags], stdout=subprocess.PIPE)
        writes = oplog.writes
        # Less our own serverStatus and the oplog count's reads.
        trips = self.requests() - ops - 1 - oplog.reads
        summary = {}
        for line in out.splitlines():
            d = json.loads(line)
            if d.get("action") == "summary":
                summary = d
        got = (summary.get("files", {}).get("copied"),
               summary.get("references", {}).get("rewritten"))
        for want, have, what in ((copied, got[0], "files copied"),
                                 (rewritten, got[1], "references rewritten")):
            if want is not None and want != have:
                sys.exit(f"bench: {cfg} {' '.join(flags)}: {have} {what}, expected {want}")
        files = max(got[0] or 0, got[1] or 0, 1)
        return dict(wall=wall, rss_kib=rss, round_trips=trips, db_writes=writes,
                    writes_per_file=None if writes is None else writes / files,
                    db_cpu=self.last_db_cpu,
                    cpu=self.last_cpu, srv_cpu=self.last_srv_cpu, load=self.last_load,
                    summary=summary)

    def files(self, set_, count, size):
        names = os.path.join(self.out, f"{set_}.names")
        with open(names, "w") as f:
            subprocess.run([sys.executable, seed.__file__, "files", HTTP_ROOT, set_, FILE_KEY,
                            str(count), str(size)], stdout=f, check=True)
        return names

    def drop_files(self, set_):
        discard(os.path.join(HTTP_ROOT, "bench", set_))

    def curl(self, set_, names, concurrency, dest, http=HTTP_URL):
        """Download-only limit: curl --parallel fetching the same files to disk."""
        fresh_dir(dest)
        cfg = os.path.join(self.out, f"{set_}.curl")
        with open(names) as f, open(cfg, "w") as c:
            for n in (l.strip() for l in f if l.strip()):
                c.write(f'url = "{http}/bench/{set_}/tfss/{FILE_KEY}/{n}"\n'
                        f'output = "{dest}/{n}"\n')
        wall, rss, _ = self.run(["curl", "--parallel", "--parallel-immediate",
                                 "--parallel-max", str(concurrency), "--fail", "-sS", "-K", cfg])
        return dict(wall=wall, rss_kib=rss, cpu=self.last_cpu, srv_cpu=self.last_srv_cpu,
                    load=self.last_load)

    def s3_bucket(self, bucket):
        # An existing bucket answers 409: fine.
        # SigV4 over an empty body: s3s-fs wants the payload hash header (answers 400 without).
        empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        subprocess.run(["curl", "-sS", "-o", "/dev/null", "--aws-sigv4", "aws:amz:us-east-1:s3",
                        "--user", "test:testsecret", "-H", f"x-amz-content-sha256: {empty}",
                        "-X", "PUT", f"{S3}/{bucket}"], check=True)

    def gcs_bucket(self, bucket):
        # fake-gcs-server: an existing bucket answers 409, fine.
        subprocess.run(["curl", "-sS", "-o", "/dev/null", "-X", "POST", "-H",
                        "content-type: application/json", "-d", json.dumps({"name": bucket}),
                        f"{GCS}/storage/v1/b?project=bench"], check=True)

    def drop_gcs_bucket(self, bucket):
        """Delete every object, then the bucket (fake-gcs-server refuses to delete a non-empty
        one)."""
        listing = subprocess.run(["curl", "-sS", f"{GCS}/storage/v1/b/{bucket}/o"],
                                 capture_output=True, text=True).stdout
        try:
            items = json.loads(listing).get("items", [])
        except ValueError:
            items = []
        for it in items:
            subprocess.run(["curl", "-sS", "-o", "/dev/null", "-X", "DELETE",
                            f"{GCS}/storage/v1/b/{bucket}/o/{quote(it['name'], safe='')}"])
        subprocess.run(["curl", "-sS", "-o", "/dev/null", "-X", "DELETE",
                        f"{GCS}/storage/v1/b/{bucket}"])

    # -- reporting --------------------------------------------------------------------------

    def row(self, target, what, runs, files, nbytes, base=None, base_what="", rate="files",
            goal=None, note=""):
        """A table row from runs (dicts with wall, rss_kib) and an optional baseline's runs."""
        wall = statistics.median(r["wall"] for r in runs)
        rss = max(r["rss_kib"] for r in runs) / 1024
        fps, mbs = files / wall, nbytes / wall / MB
        dbcpu = statistics.median(r.get("db_cpu", 0.0) for r in runs)
        cpu = statistics.median(r.get("cpu", 0.0) for r in runs)
        srv = statistics.median(r.get("srv_cpu", 0.0) for r in runs)
        load = max(r.get("load", 0.0) for r in [*runs, *(base or [])])
        wpf = [r["writes_per_file"] for r in runs if r.get("writes_per_file") is not None]
        r = dict(target=target, what=what, reps=len(runs), wall=wall, fps=fps, mbs=mbs, rss=rss,
                 cpu=cpu, dbcpu=dbcpu, srv=srv, load=load,
                 wpf=statistics.median(wpf) if wpf else None,
                 base_what=base_what, note=note, goal=goal, rate=rate)
        if base:
            bwall = statistics.median(b["wall"] for b in base)
            r.update(bwall=bwall, ratio=bwall / wall, bfps=files / bwall, bmbs=nbytes / bwall / MB)
        self.rows.append(r)
        print(fmt_row(r), flush=True)

    # -- scenarios --------------------------------------------------------------------------

    def small(self):
        a = self.a
        count, size, conc = a.small_count, a.small_size, a.concurrency
        names = self.files("small", count, size)
        dest = os.path.join(self.out, "dest-small")
        cfg = self.config("small", "bench_small", ("fs", dest), "small", conc)
        curl, copy, full = [], [], []
        for rep in range(a.reps):
            curl.append(self.record("small", "curl", rep=rep, **self.curl(
                "small", names, conc, os.path.join(self.out, "curl-small"))))
            for mode, runs in (("copy-only", copy), ("full", full)):
                if mode not in a.small_modes:
                    continue
                subprocess.run([sys.executable, seed.__file__, "docs", MONGO, "bench_small",
                                names, "0"], check=True)
                fresh_dir(dest)
                flags = ["--copy-only"] if mode == "copy-only" else []
                runs.append(self.record("small", mode, rep=rep, **self.migrate(
                    cfg, *flags, copied=count, rewritten=0 if flags else count)))
        nbytes = count * size
        tag = f"{count} × {human(size)} legacy → fs"
        for what, runs in (("migrate --copy-only", copy), ("migrate (full)", full)):
            if runs:
                self.row(tag, what, runs, count, nbytes, curl, "curl", goal=0.70)
        discard(os.path.join(self.out, "curl-small"))
        discard(dest)
        self.client.drop_database("bench_small")

    def store(self, kind, tag):
        """A fresh, empty store of `kind` for one run: (the tool's destination spec, the raw
        client's TARGET argument). GridFS: the tool writes the app database's bucket, the raw
        client its own database."""
        if kind == "fs":
            d = os.path.join(self.out, f"dest-{tag}")
            fresh_dir(d)
            return ("fs", d), None
        bucket = f"bench-{tag}"
        if kind == "s3":
            drop_bucket(bucket)
            self.s3_bucket(bucket)
            return ("s3", bucket), f"s3:{S3}:{bucket}"
        if kind == "gcs":
            self.drop_gcs_bucket(bucket)
            self.gcs_bucket(bucket)
            return ("gcs", bucket), f"gcs:{GCS}:{bucket}"
        raw_db = f"bench_{tag.replace('-', '_')}_raw"
        self.client.drop_database(raw_db)
        return ("gridfs",), f"gridfs:{db_uri(raw_db)}:{raw_db}"

    def drop_store(self, kind, tag):
        if kind == "fs":
            discard(os.path.join(self.out, f"dest-{tag}"))
        elif kind == "s3":
            drop_bucket(f"bench-{tag}")
        elif kind == "gcs":
            self.drop_gcs_bucket(f"bench-{tag}")
        else:
            self.client.drop_database(f"bench_{tag.replace('-', '_')}_raw")

    def raw_put(self, target, set_, names, concurrency):
        """The raw client (examples/raw_put.rs): the same files from the same HTTP server into
        the same store, same concurrency and part size, nothing else (no MD5, no verification,
        no ledger)."""
        ENV.setdefault("AWS_ACCESS_KEY_ID", "test")
        ENV.setdefault("AWS_SECRET_ACCESS_KEY", "testsecret")
        wall, rss, out = self.run(
            [os.path.join(self.examples, "raw_put"), target, str(concurrency),
             f"{HTTP_URL}/bench/{set_}/tfss/{FILE_KEY}/", names], stdout=subprocess.PIPE)
        moved = json.loads(out.splitlines()[-1])
        return dict(wall=wall, rss_kib=rss, cpu=self.last_cpu, srv_cpu=self.last_srv_cpu,
                    load=self.last_load, bytes=moved["bytes"])

    def copies(self, set_, database, names, count, kind, tag, conc, rep):
        """One rep of the tool and of its baseline into a fresh store of `kind`, one after the
        other: (tool run, baseline run). The baseline is curl to disk for fs, else raw_put."""
        if kind == "fs":
            base = self.record(set_, "curl", rep=rep, **self.curl(
                set_, names, conc, os.path.join(self.out, f"curl-{set_}")))
            discard(os.path.join(self.out, f"curl-{set_}"))
        else:
            _, target = self.store(kind, tag)
            base = self.record(set_, f"raw-{kind}", rep=rep,
                               **self.raw_put(target, set_, names, conc))
        spec, _ = self.store(kind, tag)
        if kind == "gridfs":
            for c in ("fs.files", "fs.chunks"):
                self.client[database].drop_collection(c)
        subprocess.run([sys.executable, seed.__file__, "docs", MONGO, database, names, "0"],
                       check=True)
        cfg = self.config(f"{tag}-{kind}", database, spec, set_, conc)
        tool = self.record(set_, kind, rep=rep, **self.migrate(cfg, copied=count))
        return tool, base

    def large(self):
        """count × size (20 × 20 MiB) into each of a.large_dests: the tool against curl (fs:
        the download-only limit) or the raw SDK client to the same server (s3, gcs, gridfs)."""
        a = self.a
        count, size, conc = a.large_count, a.large_size, a.concurrency
        names = self.files("large", count, size)
        for d in a.large_dests:
            runs, base = [], []
            for rep in range(a.reps):
                t, b = self.copies("large", "bench_large", names, count, d, "large", conc, rep)
                runs.append(t)
                base.append(b)
            self.row(f"{count} × {human(size)} legacy → {d}", "migrate (full)", runs, count,
                     count * size, base, "curl" if d == "fs" else f"raw {d} client",
                     goal=0.80)
            self.drop_store(d, "large")
        self.drop_files("large")
        self.client.drop_database("bench_large")

    def huge(self):
        """One file of a.huge_size (1 GiB) into each of a.huge_dests: the goal is peak RSS; the
        rate is compared with curl (fs) or the raw client (s3, gcs, gridfs)."""
        a = self.a
        size = a.huge_size
        names = self.files("huge", 1, size)
        for d in a.huge_dests:
            runs, base = [], []
            for rep in range(a.huge_reps or a.reps):
                t, b = self.copies("huge", "bench_huge", names, 1, d, "huge", a.concurrency, rep)
                runs.append(t)
                base.append(b)
            self.row(f"1 × {human(size)} legacy → {d}", "migrate (full)", runs, 1, size, base,
                     "curl" if d == "fs" else f"raw {d} client", rate="rss", goal=64.0)
            self.drop_store(d, "huge")
        self.client.drop_database("bench_huge")
        self.drop_files("huge")

    def scan(self):
        a = self.a
        n = a.scan_objects
        meta = self.client["bench_scan"]["_bench_meta"].find_one({"_id": "scan"}) or {}
        if (meta.get("count"), meta.get("version")) != (n, seed.SCAN_VERSION):
            subprocess.run([sys.executable, seed.__file__, "scan", MONGO, "bench_scan", str(n)],
                           check=True)
        fields = "file,meta,gallery"
        raw = os.path.join(self.examples, "raw_scan")
        out = {}
        for page in a.page_sizes:
            # The tool walks one cursor sorted by `_id` (a page per getMore); the baselines are
            # the driver alone, unsorted (`raw cursor`) and with the tool's sort (`raw cursor
            # sorted`: the same query), and, where it finishes in the
            # budget, a keyset query per page (`raw keyset`), which a server without an `_id`
            # index (the test server) answers in O(rest of the collection) per page: it is
            # projected from its first and last page and skipped past --scan-budget.
            first = self.keyset_page_secs(page, 0)
            last = self.keyset_page_secs(page, max(0, n - 2 * page))
            projected = (first + last) / 2 * ((n + page - 1) // page)
            keyset = projected <= a.scan_budget
            if not keyset:
                print(f"bench: scan: a keyset page of {page} takes {first:.1f}–{last:.1f} s on "
                      f"this server; a keyset walk of {n:,} objects would take "
                      f"~{projected / 3600:.1f} h: that baseline is skipped", file=sys.stderr)
            cfg = self.config(f"scan-{page}", "bench_scan", ("fs", "/nonexistent"), "scan",
                              a.concurrency, page_size=page)
            tool, cur, srt, key = [], [], [], []
            for rep in range(a.reps):
                for mode, runs in (("cursor", cur), ("sorted", srt)):
                    wall, rss, _ = self.run([raw, MONGO, "bench_scan", "Bench", fields, mode,
                                             str(page)], stdout=subprocess.PIPE)
                    runs.append(self.record("scan", f"raw-{mode}", rep=rep, page=page,
                                            wall=wall, rss_kib=rss))
                if keyset:
                    wall, rss, _ = self.run([raw, MONGO, "bench_scan", "Bench", fields,
                                             "keyset", str(page)], stdout=subprocess.PIPE)
                    key.append(self.record("scan", "raw-keyset", rep=rep, page=page,
                                           wall=wall, rss_kib=rss))
                ops = self.requests()
                rows = os.path.join(self.out, "scan.jsonl")
                with open(rows, "w") as f:
                    wall, rss, _ = self.run([self.bin, "-c", cfg, "-q", "list", "--output",
                                             "jsonl"], stdout=f)
                key_trips = self.requests() - ops - 1
                with open(rows) as f:
                    listed = sum(1 for _ in f)
                os.remove(rows)
                want = sum((n + k - 1) // k for k in (10, 40, 80))
                if listed != want:
                    sys.exit(f"bench: list printed {listed} references, expected {want}")
                tool.append(self.record("scan", "list", rep=rep, page=page, wall=wall,
                                        rss_kib=rss, round_trips=key_trips))
            tag = f"scan {n:,} objects (page {page})"
            self.row(tag, "list", tool, n, 0, cur, "raw cursor", rate="objects", goal=0.80)
            self.row(tag, "list", tool, n, 0, srt, "raw cursor sorted by _id (the tool's query)",
                     rate="objects", goal=0.80)
            if keyset:
                self.row(tag, "list", tool, n, 0, key, "raw keyset", rate="objects")
            else:
                self.row(tag, "raw keyset (projected)", [dict(wall=projected, rss_kib=0)], n,
                         0, rate="objects", note="first and last page timed, mean × pages")
        self.client.drop_database("bench_scan")

    def audit(self):
        """`audit` of an fs store holding N empty files, a tenth of them orphans (nothing
        references them), joined with the top-level references of the other nine tenths; the
        baseline is the raw listing of the same directory (os.scandir, names only)."""
        a = self.a
        n = a.audit_files
        store = os.path.join(self.out, "audit-store")
        fresh_dir(store)
        names = [f"{i:08x}_f{i}.bin" for i in range(n)]
        for name in names:
            open(os.path.join(store, name), "wb").close()
        referenced = os.path.join(self.out, "audit-names")
        with open(referenced, "w") as f:
            f.write("\n".join(names[: n - n // 10]) + "\n")
        subprocess.run([sys.executable, seed.__file__, "docs", MONGO, "bench_audit", referenced,
                        "0"], check=True)
        cfg = self.config("audit", "bench_audit", ("fs", store), "audit", a.concurrency)
        tool, raw = [], []
        for rep in range(a.reps):
            t0 = time.monotonic()
            listed = sum(1 for _ in os.scandir(store))
            raw.append(self.record("audit", "raw-listing", rep=rep, wall=time.monotonic() - t0,
                                   rss_kib=0))
            out = os.path.join(self.out, "audit.jsonl")
            with open(out, "w") as f:
                # Exit 6: orphans found, as seeded.
                wall, rss, _ = self.run([self.bin, "-c", cfg, "-q", "audit", "--output", "jsonl"],
                                        stdout=f, ok=(6,))
            with open(out) as f:
                findings = [json.loads(line) for line in f if line.strip()]
            os.remove(out)
            orphans = sum(1 for x in findings if x.get("finding") == "orphan")
            if listed != n or orphans != n // 10:
                sys.exit(f"bench: audit found {orphans} orphans in {listed} files, "
                         f"expected {n // 10} in {n}")
            tool.append(self.record("audit", "audit", rep=rep, wall=wall, rss_kib=rss))
        self.row(f"audit: {n:,} stored × {n - n // 10:,} references (fs)", "audit", tool, n, 0,
                 raw, "raw listing (scandir)")
        discard(store)
        self.client.drop_database("bench_audit")

    def keyset_page_secs(self, page, skip):
        """Seconds the server takes for one keyset page starting after the skip-th _id."""
        coll = self.client["bench_scan"]["Bench"]
        start = next(coll.find({}, {"_id": 1}).sort("_id", 1).skip(skip).limit(1), None)
        if start is None:
            return 0.0
        t0 = time.monotonic()
        list(coll.find({"_id": {"$gt": start["_id"]}}, {"file": 1, "meta": 1, "gallery": 1})
             .sort("_id", 1).limit(page).batch_size(page))
        return time.monotonic() - t0

    def rewrite(self):
        a = self.a
        n = a.rewrite_refs
        names = self.files("rewrite", n, 256)
        raw = os.path.join(self.examples, "raw_update")
        # The tool talks through a tap that counts its commands (no delay): bench/tap.py.
        import net
        tap_, via = net.counting_tap(self)
        cfg = self.config("rewrite", "bench_rw", ("fs", os.path.join(self.out, "dest-rw")),
                          "rewrite", a.concurrency, urls={"mongo": via})
        tool, raw_b, raw_1 = [], [], []
        for rep in range(a.reps):
            subprocess.run([sys.executable, seed.__file__, "docs", MONGO, "bench_rw", names, "0"],
                           check=True)
            wall, rss, out = self.run([raw, MONGO, "bench_rw", "Bench", "file", "500"],
                                      stdout=subprocess.PIPE)
            raw_b.append(self.record("rewrite", "raw-batch-500", rep=rep, wall=wall, rss_kib=rss,
                                     out=json.loads(out)))
            if rep == 0 or a.reps <= 1:
                subprocess.run([sys.executable, seed.__file__, "docs", MONGO, "bench_rw", names,
                                "0"], check=True)
                wall, rss, out = self.run([raw, MONGO, "bench_rw", "Bench", "file", "1"],
                                          stdout=subprocess.PIPE)
                raw_1.append(self.record("rewrite", "raw-one-by-one", rep=rep, wall=wall,
                                         rss_kib=rss, out=json.loads(out)))
            subprocess.run([sys.executable, seed.__file__, "docs", MONGO, "bench_rw", names, "0"],
                           check=True)
            fresh_dir(os.path.join(self.out, "dest-rw"))
            self.migrate(cfg, "--copy-only", copied=n)  # setup: files verified in the ledger (not timed)
            with net.Commands(self, tap_) as cmds:
                run = self.migrate(cfg, "--rewrite-only", copied=0, rewritten=n)
            tool.append(self.record("rewrite", "rewrite-only", rep=rep, commands=cmds.counts,
                                    **run))
        self.row(f"rewrite {n:,} references", "migrate --rewrite-only", tool, n, 0, raw_b,
                 "raw batched CAS updates", rate="refs", goal=0.50)
        self.row(f"rewrite {n:,} references", "migrate --rewrite-only", tool, n, 0, raw_1,
                 "raw update_one, one by one", rate="refs")
        print(f"rewrite: the tool's commands (last rep): {net.fmt_cmds(tool[-1]['commands'])}",
              flush=True)
        discard(os.path.join(self.out, "dest-rw"))
        self.drop_files("rewrite")
        self.client.drop_database("bench_rw")

    def curve(self):
        """Scaling curves (bench/curve.py): a table and plots of their own, not table rows."""
        import curve
        curve.run(self)

    def dbcost(self):
        """Database cost beside the bare CAS updates (bench/net.py): a table of its own."""
        import net
        net.dbcost(self)

    def net(self):
        """Every server behind a delaying tap, per network profile (bench/net.py, bench/tap.py)."""
        import net
        net.net(self)

    def sweep(self):
        """Alternatives for the defaults: concurrency on the small-files copy."""
        a = self.a
        count, size = a.small_count, a.small_size
        names = self.files("small", count, size)
        dest = os.path.join(self.out, "dest-sweep")
        for conc in a.sweep_concurrency:
            cfg = self.config(f"sweep-{conc}", "bench_sweep", ("fs", dest), "small", conc)
            runs, curl = [], []
            for rep in range(a.reps):
                curl.append(self.record("sweep", f"curl-c{conc}", rep=rep, **self.curl(
                    "small", names, conc, os.path.join(self.out, "curl-sweep"))))
                subprocess.run([sys.executable, seed.__file__, "docs", MONGO, "bench_sweep",
                                names, "0"], check=True)
                fresh_dir(dest)
                runs.append(self.record("sweep", f"copy-only-c{conc}", rep=rep,
                                        **self.migrate(cfg, "--copy-only", copied=count)))
            self.row(f"{count} × {human(size)} → fs, concurrency {conc}", "migrate --copy-only",
                     runs, count, count * size, curl, "curl (same concurrency)")
        discard(dest)
        discard(os.path.join(self.out, "curl-sweep"))
        self.client.drop_database("bench_sweep")


class OplogCounter:
    """Documents the server wrote while a run lasted: the entries its oplog gained (one per
    document inserted, updated or deleted — what a production primary replicates to every
    secondary), counted once the run has ended so that counting costs the run nothing. The oplog
    is capped (SecantusDB: 100,000 entries): when the run wrote more than it keeps, the count is
    unknown (None), never an undercount."""

    def __init__(self, client, since):
        self.client, self.since = client, since
        self.writes, self.reads = None, 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        oplog = self.client.local["oplog.rs"]
        oldest = oplog.find_one({}, {"ts": 1}, sort=[("ts", 1)])
        self.reads = 2
        if self.since is not None and oldest and oldest["ts"] > self.since:
            return  # entries of the run were dropped from the capped oplog
        q = {"op": {"$in": ["i", "u", "d"]}}
        if self.since is not None:
            q["ts"] = {"$gt": self.since}
        self.writes = oplog.count_documents(q)


def drop_bucket(bucket):
    """Free the space of a bench bucket: s3s-fs keeps a bucket as a directory of its data dir."""
    discard(os.path.join(ENV.get("PFM_TEST_SERVICES_DIR", "/nonexistent"), "data", "s3", bucket))


def proc_cpu(pid):
    """utime + stime of a live process, in seconds (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def service_cpu(name):
    """CPU seconds used so far by a test server of scripts/test-services (its pid file) and its
    live children (nginx's workers), or 0 when it is unknown."""
    try:
        with open(os.path.join(ENV["PFM_TEST_SERVICES_DIR"], "run", f"{name}.pid")) as f:
            pid = f.read().strip()
    except (OSError, KeyError):
        return 0.0
    total = proc_cpu(pid)
    for child in os.listdir("/proc"):
        if child.isdigit():
            try:
                with open(f"/proc/{child}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[1] == pid:
                        total += proc_cpu(child)
            except (OSError, IndexError):
                pass
    return total


def loadavg():
    """The 1-minute load average: how busy the machine was (2 cores here) as a run started."""
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0


def machine():
    """One line saying when and on what the table was measured."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30)
    return (f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores "
            f"({model}), {mem:.0f} GiB RAM")


# Directories replaced by fresh_dir, removed when the bench ends. Deleting thousands of files
# right before a measured run slows the run's own file creation: ext4 without a journal (this
# machine's root) skips inodes freed in the last 60-300 s, reading each one's inode block
# (`recently_deleted` was 34% of a 2,000-file run's CPU in `perf`); a real migration deletes
# nothing. So nothing is deleted until every measurement is done.
TRASH = []


def fresh_dir(d):
    discard(d)
    os.makedirs(d)


def discard(d):
    """Remove d when the bench ends (see TRASH)."""
    if os.path.exists(d):
        old = f"{d}.old-{len(TRASH)}-{os.getpid()}"
        os.rename(d, old)
        TRASH.append(old)


def empty_trash():
    while TRASH:
        shutil.rmtree(TRASH.pop(), ignore_errors=True)


def human(n):
    for unit, v in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= v and n % v == 0:
            return f"{n // v} {unit}"
    return f"{n} B"


HEADER = ("| scenario | tool | reps | wall (median) | files/s | MB/s | peak RSS | CPU | DB CPU | "
          "DB writes/file | servers CPU | load | baseline | baseline wall | ratio | goal |")
RULE = "|---" * (HEADER.count("|") - 1) + "|"


def fmt_row(r):
    ratio = r.get("ratio")
    goal = r.get("goal")
    if r["rate"] == "rss":
        verdict = f"RSS ≤ {goal:.0f} MiB: {'met' if r['rss'] <= goal else 'NOT met'}"
    elif goal is not None and ratio is not None:
        verdict = f"≥ {goal:.0%}: {'met' if ratio >= goal else 'NOT met'}"
    else:
        verdict = "—"
    rate = {"objects": "objects/s", "refs": "refs/s"}.get(r["rate"])
    fps = f"{r['fps']:,.0f}" + (f" {rate}" if rate else "")
    return (f"| {r['target']} | {r['what']} | {r['reps']} | {r['wall']:.2f} s | {fps} | "
            f"{r['mbs']:.1f} | {r['rss']:.1f} MiB | {r['cpu']:.1f} s | {r['dbcpu']:.1f} s | "
            + (f"{r['wpf']:.2f} | " if r.get("wpf") is not None else "— | ")
            + f"{r.get('srv', 0.0):.1f} s | {r['load']:.1f} | "
            f"{r.get('base_what') or '—'} | "
            + (f"{r['bwall']:.2f} s | {ratio:.0%} | " if ratio is not None else "— | — | ")
            + f"{verdict}" + (f"; {r['note']}" if r.get("note") else "") + " |")


# Rows each scenario adds to the table, given the arguments.
SCENARIOS = {
    "small": lambda a: len([m for m in ("copy-only", "full") if m in a.small_modes]),
    "large": lambda a: len(a.large_dests),
    "huge": lambda a: len(a.huge_dests),
    "scan": lambda a: 3 * len(a.page_sizes),
    "rewrite": lambda a: 2,
    "sweep": lambda a: len(a.sweep_concurrency),
    "audit": lambda a: 1,
    "curve": lambda a: 0,
    "dbcost": lambda a: 0,
    "net": lambda a: len(a.net_profiles) * (2 * len(a.net_concurrency)
                                            + ("large" in a.net_sizes)),
}


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--bin", required=True)
    p.add_argument("--examples", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--only", default="small,large,huge,scan,rewrite,audit,dbcost,net")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--small-count", type=int, default=2000)
    p.add_argument("--small-size", type=int, default=20 << 10)
    p.add_argument("--small-modes", default="copy-only,full")
    p.add_argument("--large-count", type=int, default=20)
    p.add_argument("--large-size", type=int, default=20 << 20)
    p.add_argument("--large-dests", default="fs,s3,gcs,gridfs")
    p.add_argument("--huge-size", type=int, default=1 << 30)
    p.add_argument("--huge-dests", default="fs,gridfs,s3,gcs")
    p.add_argument("--huge-reps", type=int, default=0,
                   help="reps of the 1 GiB copies (default: --reps); the target there is peak "
                        "RSS, and a 1 GiB upload to the GCS emulator takes ~5 minutes")
    p.add_argument("--scan-objects", type=int, default=1_000_000)
    p.add_argument("--page-sizes", default="1000")
    p.add_argument("--scan-budget", type=int, default=1800,
                   help="seconds a keyset walk may be projected to take before it is skipped")
    p.add_argument("--rewrite-refs", type=int, default=2000)
    p.add_argument("--sweep-concurrency", default="8,32,64")
    p.add_argument("--audit-files", type=int, default=100_000,
                   help="files in the audit scenario's store (a tenth of them orphans)")
    p.add_argument("--curve", action="store_true",
                   help="also run the scaling curves (bench/curve.py): full migrations of "
                        "--curve-counts files of each --curve-sizes, and `list` over "
                        "--curve-scan objects; a table and plots")
    p.add_argument("--curve-counts", default="2000,20000,100000")
    p.add_argument("--curve-sizes", default="4096,20480")
    p.add_argument("--curve-scan", default="10000,100000,1000000")
    p.add_argument("--dbcost-refs", type=int, default=2000,
                   help="references the dbcost scenario migrates (files of --small-size)")
    p.add_argument("--net-profiles", default="none,lan,cloud,far",
                   help="network profiles of the net scenario (bench/tap.py: none, lan, cloud, "
                        "far)")
    p.add_argument("--net-count", type=int, default=2000,
                   help="small files (of --small-size) per net run")
    p.add_argument("--net-concurrency", default="",
                   help="concurrencies of the net scenario's small-file runs (default: "
                        "--concurrency)")
    p.add_argument("--net-sizes", default="small,large",
                   help="small (always) and large (--large-count × --large-size through the taps)")
    p.add_argument("--mongo", choices=["py", "rs"], default="py",
                   help="the MongoDB-wire test server (bench/run starts it): py = SecantusDB's "
                        "Python server (the test suite's), rs = its Rust daemon secantusd-rs, "
                        "5-6x faster per batched write and find")
    a = p.parse_args()
    if a.quick:
        a.reps, a.small_count, a.large_count, a.large_size = 1, 20, 2, 1 << 20
        a.huge_size, a.scan_objects, a.rewrite_refs = 4 << 20, 500, 50
        a.audit_files = 200
        a.sweep_concurrency = "4"
        a.curve_counts, a.curve_sizes, a.curve_scan = "50,200", "4096", "1000,4000"
        a.dbcost_refs, a.net_count, a.net_profiles = 50, 50, "none,cloud"
    a.page_sizes = [int(x) for x in a.page_sizes.split(",")]
    a.huge_dests = a.huge_dests.split(",")
    a.large_dests = a.large_dests.split(",")
    for flag, dests in (("--huge-dests", a.huge_dests), ("--large-dests", a.large_dests)):
        if not set(dests) <= {"fs", "gridfs", "s3", "gcs"}:
            p.error(f"{flag}: fs, gridfs, s3, gcs")
    a.sweep_concurrency = [int(x) for x in a.sweep_concurrency.split(",")]
    a.curve_counts = [int(x) for x in a.curve_counts.split(",")]
    a.curve_sizes = [int(x) for x in a.curve_sizes.split(",")]
    a.curve_scan = [int(x) for x in a.curve_scan.split(",") if x]
    a.net_profiles = a.net_profiles.split(",")
    import tap
    if not set(a.net_profiles) <= set(tap.PROFILES):
        p.error(f"--net-profiles: {', '.join(tap.PROFILES)}")
    a.net_concurrency = [int(x) for x in (a.net_concurrency or str(a.concurrency)).split(",")]
    a.net_sizes = a.net_sizes.split(",")
    only = a.only.split(",")
    if a.curve and "curve" not in only:
        only.append("curve")
    unknown = [s for s in only if s not in SCENARIOS]
    if unknown:
        p.error(f"--only: unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    b = Bench(a)
    where = f"{machine()}, MongoDB server secantusd-{a.mongo}"
    print(f"{'Quick check (tiny data; timings mean nothing)' if a.quick else 'Measured'}: {where}\n")
    print(HEADER)
    print(RULE)
    try:
        for s in only:
            getattr(b, s)()
    finally:
        empty_trash()
    with open(os.path.join(a.out, "table.md"), "w") as f:
        f.write(f"Measured {where}; load = 1-minute load average when the runs started.\n\n")
        f.write(f"{HEADER}\n{RULE}\n")
        f.write("\n".join(fmt_row(r) for r in b.rows) + "\n")
    # Every scenario has checked what each run moved (a wrong count stops the bench); here the
    # table must also have every row the scenarios promise.
    want = sum(SCENARIOS[s](a) for s in only)
    if len(b.rows) != want:
        sys.exit(f"bench: {len(b.rows)} table rows, expected {want}")
    if a.quick:
        print(f"bench quick: ok, {len(b.rows)} rows (harness check, not timings)"
              + (", curve points written" if "curve" in only else ""), file=sys.stderr)


if __name__ == "__main__":
    main()
