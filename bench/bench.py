"""The side-by-side benchmark behind bench/run (which starts the services and builds first).

Every scenario runs the tool (release build) and its baseline on the same data in the same
invocation, REPS times each, and reports medians: wall time, files/s, MB/s (10^6 bytes), peak RSS
(the child's own ru_maxrss from wait4) and the ratio to the baseline. Raw results are appended to
OUT/results.jsonl; the table goes to stdout (and OUT/table.md).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import pymongo

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import seed  # noqa: E402

ENV = os.environ
MONGO = ENV["PFM_TEST_MONGO_URI"]
HTTP_URL = ENV["PFM_TEST_HTTP_URL"]
HTTP_ROOT = ENV["PFM_TEST_HTTP_ROOT"]
S3 = ENV["PFM_TEST_S3_ENDPOINT"]
FILE_KEY = "benchKey"
MB = 1e6
TIME = "/usr/bin/time"


def db_uri(database):
    hosts, _, query = MONGO.partition("/?")
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
        self.last_db_cpu = 0.0
        self.client = pymongo.MongoClient(MONGO)

    # -- running and measuring ------------------------------------------------------------

    def run(self, argv, stdout=subprocess.DEVNULL, ok=(0,)):
        """Run argv; return (wall seconds, peak RSS KiB, stdout text if captured).

        The peak RSS comes from /usr/bin/time, not from our own wait4: a child forked from this
        Python process keeps Python's ~30 MiB high-water mark across exec (Linux carries
        ru_maxrss over), which would put a floor under every figure. time(1) is tiny, and the
        process it forks is the measured one."""
        cap = stdout == subprocess.PIPE
        cpu0 = self.db_cpu()
        with tempfile.TemporaryFile() as err, tempfile.NamedTemporaryFile("r") as rss:
            t0 = time.monotonic()
            p = subprocess.Popen([TIME, "-f", "%M", "-o", rss.name, *argv], stdout=stdout,
                                 stderr=err)
            out = p.stdout.read().decode() if cap else ""
            code = p.wait()
            wall = time.monotonic() - t0
            if code not in ok:
                err.seek(0)
                sys.exit(f"bench: {' '.join(argv)} exited {code}\n"
                         f"{err.read().decode(errors='replace')[-3000:]}")
            lines = [line for line in rss.read().splitlines() if line.strip().isdigit()]
            kib = int(lines[-1]) if lines else 0
        self.last_db_cpu = self.db_cpu() - cpu0
        return wall, kib, out

    def db_cpu(self):
        """CPU seconds the MongoDB server has used so far (utime + stime from /proc), or 0 when
        its pid is unknown. Tells how much of a run the test server itself was busy."""
        try:
            with open(os.path.join(ENV["PFM_TEST_SERVICES_DIR"], "run", "mongo.pid")) as f:
                pid = f.read().strip()
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, KeyError, ValueError, IndexError):
            return 0.0

    def opcounts(self):
        s = self.client.admin.command("serverStatus").get("opcounters", {})
        return sum(int(v) for v in s.values())

    def record(self, scenario, variant, **kv):
        kv.setdefault("db_cpu", self.last_db_cpu)
        kv.update(scenario=scenario, variant=variant, t=time.time())
        self.results.write(json.dumps(kv) + "\n")
        self.results.flush()
        return kv

    # -- building blocks ------------------------------------------------------------------

    def config(self, name, database, dest, set_, concurrency, page_size=None):
        lines = [
            "[mongo]", f'uri = "{db_uri(database)}"',
            *([f"page_size = {page_size}"] if page_size else []),
            "[parse]", 'app_id = "benchApp"', f'file_key = "{FILE_KEY}"',
            'public_server_url = "http://127.0.0.1:1337/parse"',
            "[source.hosted]", 'type = "http"',
            f'tfss_base_url = "{HTTP_URL}/bench/{set_}/tfss/{{file_key}}/"',
            f'legacy_base_url = "{HTTP_URL}/bench/{set_}/tfss/{{file_key}}/"',
            "[destination]",
        ]
        kind = dest[0]
        if kind == "fs":
            lines += ['type = "fs"', f'path = "{dest[1]}"', 'encryption = "none"']
        elif kind == "s3":
            lines += ['type = "s3"', f'bucket = "{dest[1]}"', f'endpoint = "{S3}"',
                      'region = "us-east-1"', 'access_key_id = "test"',
                      'secret_access_key = "testsecret"']
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
        ops = self.opcounts()
        wall, rss, out = self.run(
            [self.bin, "-c", cfg, "-q", "--progress", "never", "migrate", "--yes",
             "--output", "jsonl", *flags], stdout=subprocess.PIPE)
        trips = self.opcounts() - ops - 1  # less our own serverStatus
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
        return dict(wall=wall, rss_kib=rss, round_trips=trips, db_cpu=self.last_db_cpu,
                    summary=summary)

    def files(self, set_, count, size):
        names = os.path.join(self.out, f"{set_}.names")
        with open(names, "w") as f:
            subprocess.run([sys.executable, seed.__file__, "files", HTTP_ROOT, set_, FILE_KEY,
                            str(count), str(size)], stdout=f, check=True)
        return names

    def drop_files(self, set_):
        shutil.rmtree(os.path.join(HTTP_ROOT, "bench", set_), ignore_errors=True)

    def curl(self, set_, names, concurrency, dest):
        """Download-only limit: curl --parallel fetching the same files to disk."""
        fresh_dir(dest)
        cfg = os.path.join(self.out, f"{set_}.curl")
        with open(names) as f, open(cfg, "w") as c:
            for n in (l.strip() for l in f if l.strip()):
                c.write(f'url = "{HTTP_URL}/bench/{set_}/tfss/{FILE_KEY}/{n}"\n'
                        f'output = "{dest}/{n}"\n')
        wall, rss, _ = self.run(["curl", "--parallel", "--parallel-immediate",
                                 "--parallel-max", str(concurrency), "--fail", "-sS", "-K", cfg])
        return dict(wall=wall, rss_kib=rss)

    def s3_bucket(self, bucket):
        # An existing bucket answers 409: fine.
        # SigV4 over an empty body: s3s-fs wants the payload hash header (answers 400 without).
        empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        subprocess.run(["curl", "-sS", "-o", "/dev/null", "--aws-sigv4", "aws:amz:us-east-1:s3",
                        "--user", "test:testsecret", "-H", f"x-amz-content-sha256: {empty}",
                        "-X", "PUT", f"{S3}/{bucket}"], check=True)

    # -- reporting --------------------------------------------------------------------------

    def row(self, target, what, runs, files, nbytes, base=None, base_what="", rate="files",
            goal=None, note=""):
        """A table row from runs (dicts with wall, rss_kib) and an optional baseline's runs."""
        wall = statistics.median(r["wall"] for r in runs)
        rss = max(r["rss_kib"] for r in runs) / 1024
        fps, mbs = files / wall, nbytes / wall / MB
        dbcpu = statistics.median(r.get("db_cpu", 0.0) for r in runs)
        r = dict(target=target, what=what, reps=len(runs), wall=wall, fps=fps, mbs=mbs, rss=rss,
                 dbcpu=dbcpu,
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
        shutil.rmtree(os.path.join(self.out, "curl-small"), ignore_errors=True)
        shutil.rmtree(dest, ignore_errors=True)
        self.client.drop_database("bench_small")

    def large(self):
        a = self.a
        count, size, conc = a.large_count, a.large_size, a.concurrency
        names = self.files("large", count, size)
        curl = []
        runs = {"fs": [], "s3": []}
        dest = os.path.join(self.out, "dest-large")
        self.s3_bucket("bench-large")
        cfgs = {"fs": self.config("large-fs", "bench_large", ("fs", dest), "large", conc),
                "s3": self.config("large-s3", "bench_large", ("s3", "bench-large"), "large",
                                  conc)}
        for rep in range(a.reps):
            curl.append(self.record("large", "curl", rep=rep, **self.curl(
                "large", names, conc, os.path.join(self.out, "curl-large"))))
            for d in ("fs", "s3"):
                subprocess.run([sys.executable, seed.__file__, "docs", MONGO, "bench_large",
                                names, "0"], check=True)
                fresh_dir(dest)
                runs[d].append(self.record("large", d, rep=rep, **self.migrate(
                    cfgs[d], copied=count, rewritten=count)))
        for d in ("fs", "s3"):
            self.row(f"{count} × {human(size)} legacy → {d}", "migrate (full)", runs[d], count,
                     count * size, curl, "curl", rate="bytes", goal=0.80)
        shutil.rmtree(os.path.join(self.out, "curl-large"), ignore_errors=True)
        shutil.rmtree(dest, ignore_errors=True)
        self.drop_files("large")
        drop_bucket("bench-large")
        self.client.drop_database("bench_large")

    def huge(self):
        a = self.a
        size = a.huge_size
        names = self.files("huge", 1, size)
        dest = os.path.join(self.out, "dest-huge")
        self.s3_bucket("bench-huge")
        curl = [self.record("huge", "curl", rep=rep, **self.curl(
            "huge", names, 1, os.path.join(self.out, "curl-huge"))) for rep in range(a.reps)]
        shutil.rmtree(os.path.join(self.out, "curl-huge"), ignore_errors=True)
        for d, spec in (("fs", ("fs", dest)), ("s3", ("s3", "bench-huge")),
                        ("gridfs", ("gridfs",))):
            cfg = self.config(f"huge-{d}", "bench_huge", spec, "huge", a.concurrency)
            runs = []
            for rep in range(a.reps):
                subprocess.run([sys.executable, seed.__file__, "docs", MONGO, "bench_huge",
                                names, "0"], check=True)
                fresh_dir(dest)
                runs.append(self.record("huge", d, rep=rep, **self.migrate(cfg, copied=1)))
            self.row(f"1 × {human(size)} legacy → {d}", "migrate (full)", runs, 1, size, curl,
                     "curl", rate="rss", goal=64.0)
            shutil.rmtree(dest, ignore_errors=True)
        self.client.drop_database("bench_huge")
        drop_bucket("bench-huge")
        self.drop_files("huge")

    def scan(self):
        a = self.a
        n = a.scan_objects
        subprocess.run([sys.executable, seed.__file__, "scan", MONGO, "bench_scan", str(n)],
                       check=True)
        fields = "file,meta,gallery"
        raw = os.path.join(self.examples, "raw_scan")
        out = {}
        for page in a.page_sizes:
            cfg = self.config(f"scan-{page}", "bench_scan", ("fs", "/nonexistent"), "scan",
                              a.concurrency, page_size=page)
            tool, cur, key = [], [], []
            for rep in range(a.reps):
                wall, rss, _ = self.run([raw, MONGO, "bench_scan", "Bench", fields, "cursor",
                                         str(page)], stdout=subprocess.PIPE)
                cur.append(self.record("scan", "raw-cursor", rep=rep, page=page, wall=wall,
                                       rss_kib=rss))
                wall, rss, _ = self.run([raw, MONGO, "bench_scan", "Bench", fields, "keyset",
                                         str(page)], stdout=subprocess.PIPE)
                key.append(self.record("scan", "raw-keyset", rep=rep, page=page, wall=wall,
                                       rss_kib=rss))
                ops = self.opcounts()
                rows = os.path.join(self.out, "scan.jsonl")
                with open(rows, "w") as f:
                    wall, rss, _ = self.run([self.bin, "-c", cfg, "-q", "list", "--output",
                                             "jsonl"], stdout=f)
                key_trips = self.opcounts() - ops - 1
                with open(rows) as f:
                    listed = sum(1 for _ in f)
                os.remove(rows)
                want = sum((n + k - 1) // k for k in (10, 40, 80))
                if listed != want:
                    sys.exit(f"bench: list printed {listed} references, expected {want}")
                tool.append(self.record("scan", "list", rep=rep, page=page, wall=wall,
                                        rss_kib=rss, round_trips=key_trips))
            out[page] = (tool, cur, key)
            tag = f"scan {n:,} objects (page {page})"
            self.row(tag, "list", tool, n, 0, cur, "raw cursor", rate="objects", goal=0.80)
            self.row(tag, "list", tool, n, 0, key, "raw keyset", rate="objects", goal=0.80)
        self.client.drop_database("bench_scan")

    def rewrite(self):
        a = self.a
        n = a.rewrite_refs
        names = self.files("rewrite", n, 256)
        cfg = self.config("rewrite", "bench_rw", ("fs", os.path.join(self.out, "dest-rw")),
                          "rewrite", a.concurrency)
        raw = os.path.join(self.examples, "raw_update")
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
            tool.append(self.record("rewrite", "rewrite-only", rep=rep,
                                    **self.migrate(cfg, "--rewrite-only", copied=0, rewritten=n)))
        self.row(f"rewrite {n:,} references", "migrate --rewrite-only", tool, n, 0, raw_b,
                 "raw batched CAS updates", rate="refs", goal=0.50)
        self.row(f"rewrite {n:,} references", "migrate --rewrite-only", tool, n, 0, raw_1,
                 "raw update_one, one by one", rate="refs")
        shutil.rmtree(os.path.join(self.out, "dest-rw"), ignore_errors=True)
        self.drop_files("rewrite")
        self.client.drop_database("bench_rw")

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
        shutil.rmtree(dest, ignore_errors=True)
        shutil.rmtree(os.path.join(self.out, "curl-sweep"), ignore_errors=True)
        self.client.drop_database("bench_sweep")


def drop_bucket(bucket):
    """Free the space of a bench bucket: s3s-fs keeps a bucket as a directory of its data dir."""
    d = os.path.join(ENV.get("PFM_TEST_SERVICES_DIR", "/nonexistent"), "data", "s3", bucket)
    shutil.rmtree(d, ignore_errors=True)


def fresh_dir(d):
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)


def human(n):
    for unit, v in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= v and n % v == 0:
            return f"{n // v} {unit}"
    return f"{n} B"


HEADER = ("| scenario | tool | reps | wall (median) | files/s | MB/s | peak RSS | DB CPU | "
          "baseline | baseline wall | ratio | goal |")
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
            f"{r['mbs']:.1f} | {r['rss']:.1f} MiB | {r['dbcpu']:.1f} s | "
            f"{r.get('base_what') or '—'} | "
            + (f"{r['bwall']:.2f} s | {ratio:.0%} | " if ratio is not None else "— | — | ")
            + f"{verdict} |")


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--bin", required=True)
    p.add_argument("--examples", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--only", default="small,large,huge,scan,rewrite")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--small-count", type=int, default=2000)
    p.add_argument("--small-size", type=int, default=20 << 10)
    p.add_argument("--small-modes", default="copy-only,full")
    p.add_argument("--large-count", type=int, default=20)
    p.add_argument("--large-size", type=int, default=20 << 20)
    p.add_argument("--huge-size", type=int, default=1 << 30)
    p.add_argument("--scan-objects", type=int, default=20000)
    p.add_argument("--page-sizes", default="1000")
    p.add_argument("--rewrite-refs", type=int, default=2000)
    p.add_argument("--sweep-concurrency", default="8,32,64")
    a = p.parse_args()
    if a.quick:
        a.reps, a.small_count, a.large_count, a.large_size = 1, 20, 2, 1 << 20
        a.huge_size, a.scan_objects, a.rewrite_refs = 4 << 20, 500, 50
        a.sweep_concurrency = "4"
    a.page_sizes = [int(x) for x in a.page_sizes.split(",")]
    a.sweep_concurrency = [int(x) for x in a.sweep_concurrency.split(",")]
    b = Bench(a)
    print(HEADER)
    print(RULE)
    for s in a.only.split(","):
        getattr(b, s)()
    with open(os.path.join(a.out, "table.md"), "w") as f:
        f.write(f"{HEADER}\n{RULE}\n")
        f.write("\n".join(fmt_row(r) for r in b.rows) + "\n")
    if a.quick:
        # The quick mode checks that every scenario ran and moved what it should, not timings.
        print(f"bench quick: {len(b.rows)} rows", file=sys.stderr)


if __name__ == "__main__":
    main()
