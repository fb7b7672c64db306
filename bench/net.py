"""Database cost and real-network scenarios of bench/run (`--only dbcost,net`).

dbcost: what a full migration costs the MongoDB server, beside the updates it cannot avoid. Per
rep, on the same freshly seeded documents: `raw_update` (examples/raw_update.rs: one `find` of
the references, then the compare-and-swap updates in batches of 500, nothing else), then the
tool's full migration of the same references (copy, verify, rewrite, ledger). Both talk to the
server through a tap (bench/tap.py) with no delay that counts the commands by name: messages,
statements, bytes sent and answered. The server's CPU (its process, from /proc) is the cost; the
table gives it per migrated reference and the ratio to the raw updates (goal: at most 1.5×).

net: the same small-file copy and full migration, and the large files, with every server behind
a delaying tap: `--net-profiles` (bench/tap.py's PROFILES: round trips to the database, S3 and
the file server), each beside curl --parallel at the same concurrency through the same tap.
Rows go to the main table (goals: copy-only ≥ 80% of curl, the full migration ≥ 70% of
copy-only, large files ≥ 80% of curl); OUT/net.jsonl keeps the points and OUT/net-*.png plots
files/s and MB/s against the file server's round-trip time.
"""
import json
import os
import statistics
import subprocess
import sys
from urllib.parse import urlparse

import seed
import tap

MB = 1e6


def host_port(url):
    u = urlparse(url if "://" in url else f"x://{url}")
    return f"{u.hostname}:{u.port}"


def mongo_via(uri, port):
    """The same MongoDB URI with its host replaced by the tap's."""
    scheme, rest = uri.split("://", 1)
    hosts, sep, tail = rest.partition("/")
    return f"{scheme}://127.0.0.1:{port}{sep}{tail}"


def taps(b):
    if getattr(b, "net_taps", None) is None:
        b.net_taps = tap.Taps()
    return b.net_taps


def fmt_cmds(cmds):
    """`update 12×/2,000 stmts, insert 4×/…` — the commands that wrote or read documents."""
    keep = sorted(((k, v) for k, v in cmds.items() if v["n"]), key=lambda kv: -kv[1]["sent"])
    return ", ".join(f"{k} {v['n']}×" + (f"/{v['stmts']:,}" if v["stmts"] else "")
                     + f" ({(v['sent'] + v['answered']) / 1024:,.0f} KiB, {v['secs']:.2f} s)"
                     for k, v in keep)


def counting_tap(b):
    """A tap with no delay in front of the database that counts commands: (tap, the MongoDB URI
    through it)."""
    if getattr(b, "db_tap", None) is None:
        t = taps(b).add(host_port(b.mongo.split("://", 1)[1].split("/")[0]), 0.0, mongo=True)
        b.db_tap = (t, mongo_via(b.mongo, t.port))
    return b.db_tap


class Commands:
    """The commands a tap counted while the block ran (`.counts`)."""

    def __init__(self, b, t):
        self.b, self.t, self.counts = b, t, {}

    def __enter__(self):
        self.before = taps(self.b).snapshot(self.t)
        return self

    def __exit__(self, *exc):
        self.counts = tap.delta(taps(self.b).snapshot(self.t), self.before)


# -- database cost --------------------------------------------------------------------------

def dbcost(b):
    a = b.a
    n, size = a.dbcost_refs, a.small_size
    names = b.files("dbcost", n, size)
    t, via = counting_tap(b)
    db = "bench_dbcost"
    dest = os.path.join(b.out, "dest-dbcost")
    cfg = b.config("dbcost", db, ("fs", dest), "dbcost", a.concurrency, urls={"mongo": via})
    raw = os.path.join(b.examples, "raw_update")
    raws, tools = [], []
    for rep in range(a.reps):
        subprocess.run([sys.executable, seed.__file__, "docs", b.mongo, db, names, "0"],
                       check=True)
        with Commands(b, t) as cmds:
            wall, _, out = b.run([raw, via, db, "Bench", "file", "500"], stdout=subprocess.PIPE)
        raws.append(b.record("dbcost", "raw-cas", rep=rep, wall=wall, commands=cmds.counts,
                             out=json.loads(out)))
        subprocess.run([sys.executable, seed.__file__, "docs", b.mongo, db, names, "0"],
                       check=True)
        b.fresh_dir(dest)
        with Commands(b, t) as cmds:
            run = b.migrate(cfg, copied=n, rewritten=n)
        run["commands"] = cmds.counts
        tools.append(b.record("dbcost", "migrate", rep=rep, **run))
    b.discard(dest)
    b.drop_files("dbcost")
    b.client.drop_database(db)
    raw_cpu = statistics.median(r["db_cpu"] for r in raws)
    tool_cpu = statistics.median(r["db_cpu"] for r in tools)
    ratio = tool_cpu / raw_cpu if raw_cpu else float("inf")
    lines = [
        "| run | reps | DB CPU (median) | DB CPU per reference | DB round trips | "
        "commands (messages/statements, bytes both ways, seconds to the answers) |",
        "|---|---|---|---|---|---|",
        f"| raw CAS updates (`raw_update`, batches of 500) | {len(raws)} | {raw_cpu:.2f} s | "
        f"{raw_cpu / n * 1e6:,.0f} µs | {sum(v['n'] for v in raws[-1]['commands'].values())} | "
        f"{fmt_cmds(raws[-1]['commands'])} |",
        f"| full migration (`migrate`) | {len(tools)} | {tool_cpu:.2f} s | "
        f"{tool_cpu / n * 1e6:,.0f} µs | "
        f"{sum(v['n'] for v in tools[-1]['commands'].values())} | "
        f"{fmt_cmds(tools[-1]['commands'])} |",
        "",
        f"Database cost of the migration: **{ratio:.2f}× the bare CAS updates** "
        f"({n:,} references of {size // 1024} KiB files; goal ≤ 1.5×: "
        f"{'met' if ratio <= 1.5 else 'NOT met'}).",
    ]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(b.out, "dbcost.md"), "w") as f:
        f.write(text)
    print("\n" + text, flush=True)


# -- real networks ---------------------------------------------------------------------------

def net(b):
    a = b.a
    count, size = a.net_count, a.small_size
    names = b.files("net", count, size)
    lnames = b.files("netlarge", a.large_count, a.large_size)
    points = []
    path = os.path.join(b.out, "net.jsonl")
    mongo_up = host_port(b.mongo.split("://", 1)[1].split("/")[0])
    http_up = host_port(os.environ["PFM_TEST_HTTP_URL"])
    s3_up = host_port(os.environ["PFM_TEST_S3_ENDPOINT"])
    dest = os.path.join(b.out, "dest-net")
    db = "bench_net"
    with open(path, "w") as out:
        for prof in a.net_profiles:
            rtt = tap.PROFILES[prof]
            ts = taps(b)
            mt = ts.add(mongo_up, rtt["db"], mongo=True)
            ht = ts.add(http_up, rtt["files"])
            st = ts.add(s3_up, rtt["s3"])
            urls = {"mongo": mongo_via(b.mongo, mt.port), "http": f"http://127.0.0.1:{ht.port}",
                    "s3": f"http://127.0.0.1:{st.port}"}
            for conc in a.net_concurrency:
                p = profile_point(b, prof, rtt, conc, urls, names, count, size, dest, db, mt)
                points.append(p)
                out.write(json.dumps(p) + "\n")
                out.flush()
            if "large" in a.net_sizes:
                p = large_point(b, prof, rtt, a.concurrency, urls, lnames, dest, db)
                points.append(p)
                out.write(json.dumps(p) + "\n")
                out.flush()
    b.discard(dest)
    b.drop_files("net")
    b.drop_files("netlarge")
    b.client.drop_database(db)
    plot(b, points)


def profile_point(b, prof, rtt, conc, urls, names, count, size, dest, db, mt):
    a = b.a
    cfg = b.config(f"net-{prof}-{conc}", db, ("fs", dest), "net", conc, urls=urls)
    curl, copy, full = [], [], []
    label = f"{count} × {size // 1024} KiB → fs, {prof} (files {rtt['files']:g} ms, db {rtt['db']:g} ms), c{conc}"
    for rep in range(a.reps):
        curl.append(b.record("net", f"curl-{prof}-c{conc}", rep=rep, **b.curl(
            "net", names, conc, os.path.join(b.out, "curl-net"), http=urls["http"])))
        b.discard(os.path.join(b.out, "curl-net"))
        for flags, runs in ((["--copy-only"], copy), ([], full)):
            subprocess.run([sys.executable, seed.__file__, "docs", b.mongo, db, names, "0"],
                           check=True)
            b.fresh_dir(dest)
            with Commands(b, mt) as cmds:
                run = b.migrate(cfg, *flags, copied=count, rewritten=0 if flags else count)
            run["commands"] = cmds.counts
            runs.append(b.record("net", f"{'copy' if flags else 'full'}-{prof}-c{conc}", rep=rep,
                                 **run))
    nbytes = count * size
    b.row(label, "migrate --copy-only", copy, count, nbytes, curl, "curl (same taps)", goal=0.80)
    b.row(label, "migrate (full)", full, count, nbytes, copy, "migrate --copy-only",
          goal=0.70)
    med = lambda runs: statistics.median(r["wall"] for r in runs)  # noqa: E731
    return dict(kind="small", profile=prof, rtt=rtt, concurrency=conc, count=count, size=size,
                curl_fps=count / med(curl), copy_fps=count / med(copy),
                full_fps=count / med(full),
                copy_trips=statistics.median(
                    sum(v["n"] for v in r["commands"].values()) for r in copy),
                full_trips=statistics.median(
                    sum(v["n"] for v in r["commands"].values()) for r in full))


def large_point(b, prof, rtt, conc, urls, names, dest, db):
    a = b.a
    count, size = a.large_count, a.large_size
    cfg = b.config(f"netlarge-{prof}", db, ("fs", dest), "netlarge", conc, urls=urls)
    curl, full = [], []
    for rep in range(a.reps):
        curl.append(b.record("net", f"curl-large-{prof}", rep=rep, **b.curl(
            "netlarge", names, conc, os.path.join(b.out, "curl-net"), http=urls["http"])))
        b.discard(os.path.join(b.out, "curl-net"))
        subprocess.run([sys.executable, seed.__file__, "docs", b.mongo, db, names, "0"],
                       check=True)
        b.fresh_dir(dest)
        full.append(b.record("net", f"large-{prof}", rep=rep,
                             **b.migrate(cfg, copied=count, rewritten=count)))
    label = f"{count} × {size >> 20} MiB → fs, {prof} (files {rtt['files']:g} ms)"
    b.row(label, "migrate (full)", full, count, count * size, curl, "curl (same taps)",
          goal=0.80)
    med = lambda runs: statistics.median(r["wall"] for r in runs)  # noqa: E731
    return dict(kind="large", profile=prof, rtt=rtt, concurrency=conc, count=count, size=size,
                curl_mbs=count * size / med(curl) / MB, full_mbs=count * size / med(full) / MB)


def plot(b, points):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("bench: net: matplotlib not installed, no plots", file=sys.stderr)
        return

    def chart(name, xlabel, ylabel, lines):
        """One plot of `lines` ((xs, ys, style, label)), x on a log scale past 1 ms."""
        fig, ax = plt.subplots(figsize=(6, 4))
        for xs, ys, style, label in lines:
            ax.plot(xs, ys, style, label=label)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_xscale("symlog", linthresh=1)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(os.path.join(b.out, name), dpi=100)
        plt.close(fig)

    small = [p for p in points if p["kind"] == "small"]
    lines = []
    for conc in sorted({p["concurrency"] for p in small}):
        pts = sorted((p for p in small if p["concurrency"] == conc),
                     key=lambda p: p["rtt"]["files"])
        xs = [p["rtt"]["files"] for p in pts]
        lines += [(xs, [p["copy_fps"] for p in pts], "o-", f"migrate --copy-only, c{conc}"),
                  (xs, [p["full_fps"] for p in pts], "^-", f"migrate (full), c{conc}"),
                  (xs, [p["curl_fps"] for p in pts], "s--", f"curl --parallel, c{conc}")]
    chart("net-small.png", "round trip to the file server (ms; database and S3 per profile)",
          "files/s", lines)
    large = sorted((p for p in points if p["kind"] == "large"), key=lambda p: p["rtt"]["files"])
    if large:
        xs = [p["rtt"]["files"] for p in large]
        chart("net-large.png", "round trip to the file server (ms)", "MB/s",
              [(xs, [p["full_mbs"] for p in large], "o-", "migrate (full)"),
               (xs, [p["curl_mbs"] for p in large], "s--", "curl --parallel")])
    print(f"bench: net plots in {b.out}/net-*.png", file=sys.stderr)
