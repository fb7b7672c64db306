"""Scaling curves for bench/run --curve: how the cost of a migration grows with the number of files
and of objects, not one point.

For each file size and count (--curve-sizes, --curve-counts) the full migration of COUNT legacy
files of SIZE (one top-level reference each) runs once beside curl fetching the same files (the
download-only limit); for each object count (--curve-scan) `list` walks a seeded collection beside
the raw driver cursor with the same projection. Each point records files/s, MB/s, peak RSS, the
tool's CPU per file (user + sys, from GNU time), database round trips per 1,000 files and database
writes per file. The points go to OUT/curve.jsonl and OUT/curve.md; with matplotlib (installed
into the bench's venv by bench/run) also OUT/curve-*.png: rate vs count, RSS vs count, CPU µs per
file vs count.
"""
import json
import os
import subprocess
import sys

import seed

MB = 1e6


def small_point(b, size, count):
    """One full migration of COUNT × SIZE files and its curl baseline, as a curve point."""
    set_ = f"curve-{size}"
    names = b.files(set_, count, size)  # the first COUNT files of the set (kept across points)
    dest = os.path.join(b.out, f"dest-{set_}")
    db = f"bench_curve_{size}"
    cfg = b.config(set_, db, ("fs", dest), set_, b.a.concurrency)
    curl = b.curl(set_, names, b.a.concurrency, os.path.join(b.out, f"curl-{set_}"))
    subprocess.run([sys.executable, seed.__file__, "docs", b.mongo, db, names, "0"], check=True)
    b.fresh_dir(dest)
    run = b.migrate(cfg, copied=count, rewritten=count)
    b.discard(dest)
    b.discard(os.path.join(b.out, f"curl-{set_}"))
    b.client.drop_database(db)
    return dict(kind="files", size=size, count=count,
                tool_fps=count / run["wall"], tool_mbs=count * size / run["wall"] / MB,
                curl_fps=count / curl["wall"], curl_mbs=count * size / curl["wall"] / MB,
                ratio=curl["wall"] / run["wall"],
                tool_rss_mib=run["rss_kib"] / 1024, curl_rss_mib=curl["rss_kib"] / 1024,
                tool_cpu_us_per_file=run["cpu"] / count * 1e6,
                curl_cpu_us_per_file=curl["cpu"] / count * 1e6,
                trips_per_1000=run["round_trips"] / count * 1000,
                writes_per_file=run["writes_per_file"], db_cpu=run["db_cpu"],
                wall=run["wall"], curl_wall=curl["wall"], load=run["load"])


def scan_point(b, count):
    """`list` over COUNT seeded objects and the raw cursor with the same projection."""
    db = "bench_curve_scan"
    meta = b.client[db]["_bench_meta"].find_one({"_id": "scan"}) or {}
    if (meta.get("count"), meta.get("version")) != (count, seed.SCAN_VERSION):
        subprocess.run([sys.executable, seed.__file__, "scan", b.mongo, db, str(count)],
                       check=True)
    raw = os.path.join(b.examples, "raw_scan")
    page = 1000
    cur_wall, cur_rss, _ = b.run([raw, b.mongo, db, "Bench", "file,meta,gallery", "cursor",
                                  str(page)], stdout=subprocess.PIPE)
    # The same cursor sorted by `_id`: the tool's own query (its walk resumes by `_id`).
    srt_wall, _, _ = b.run([raw, b.mongo, db, "Bench", "file,meta,gallery", "sorted",
                            str(page)], stdout=subprocess.PIPE)
    cfg = b.config("curve-scan", db, ("fs", "/nonexistent"), "scan", b.a.concurrency,
                   page_size=page)
    ops = b.requests()
    with open(os.devnull, "w") as null:
        wall, rss, _ = b.run([b.bin, "-c", cfg, "-q", "list", "--output", "jsonl"], stdout=null)
    trips = b.requests() - ops - 1
    return dict(kind="scan", count=count, tool_ops=count / wall, raw_ops=count / cur_wall,
                ratio=cur_wall / wall, sorted_ops=count / srt_wall,
                sorted_ratio=srt_wall / wall, tool_rss_mib=rss / 1024,
                raw_rss_mib=cur_rss / 1024,
                tool_cpu_us_per_object=b.last_cpu / count * 1e6,
                trips_per_1000=trips / count * 1000, wall=wall, raw_wall=cur_wall,
                load=b.last_load)


def run(b):
    a = b.a
    points = []
    path = os.path.join(b.out, "curve.jsonl")
    with open(path, "w") as out:
        for size in a.curve_sizes:
            for count in a.curve_counts:
                p = small_point(b, size, count)
                points.append(p)
                out.write(json.dumps(p) + "\n")
                out.flush()
                print(f"curve: {count:>7,} × {size:>6} B  tool {p['tool_fps']:>7,.0f} files/s "
                      f"({p['ratio']:.0%} of curl)  RSS {p['tool_rss_mib']:.1f} MiB  "
                      f"CPU {p['tool_cpu_us_per_file']:.0f} µs/file  "
                      f"{p['trips_per_1000']:.1f} trips/1k  "
                      f"{fmt_writes(p)} DB writes/file", flush=True)
            b.drop_files(f"curve-{size}")
        for count in a.curve_scan:
            p = scan_point(b, count)
            points.append(p)
            out.write(json.dumps(p) + "\n")
            out.flush()
            print(f"curve: scan {count:>9,} objects  tool {p['tool_ops']:>9,.0f}/s "
                  f"({p['ratio']:.0%} of the raw cursor, {p['sorted_ratio']:.0%} of it "
                  f"sorted by _id)  RSS {p['tool_rss_mib']:.1f} MiB  "
                  f"{p['trips_per_1000']:.2f} trips/1k", flush=True)
        b.client.drop_database("bench_curve_scan")
    want = len(a.curve_sizes) * len(a.curve_counts) + len(a.curve_scan)
    if len(points) != want:
        sys.exit(f"bench: curve: {len(points)} points, expected {want}")
    table(b, points)
    plot(b, points)
    return points


def fmt_writes(p):
    w = p["writes_per_file"]
    return "— (past the oplog's cap)" if w is None else f"{w:.2f}"


def table(b, points):
    lines = ["| files | size | tool files/s | curl files/s | ratio | tool MB/s | peak RSS | "
             "CPU µs/file | round trips /1k files | DB writes/file |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for p in (p for p in points if p["kind"] == "files"):
        lines.append(f"| {p['count']:,} | {p['size'] // 1024} KiB | {p['tool_fps']:,.0f} | "
                     f"{p['curl_fps']:,.0f} | {p['ratio']:.0%} | {p['tool_mbs']:.1f} | "
                     f"{p['tool_rss_mib']:.1f} MiB | {p['tool_cpu_us_per_file']:.0f} | "
                     f"{p['trips_per_1000']:.1f} | {fmt_writes(p)} |")
    scans = [p for p in points if p["kind"] == "scan"]
    if scans:
        lines += ["", "| objects | list objects/s | raw cursor objects/s | ratio | "
                      "raw sorted by _id objects/s | ratio | peak RSS | "
                      "CPU µs/object | round trips /1k objects |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for p in scans:
            lines.append(f"| {p['count']:,} | {p['tool_ops']:,.0f} | {p['raw_ops']:,.0f} | "
                         f"{p['ratio']:.0%} | {p['sorted_ops']:,.0f} | "
                         f"{p['sorted_ratio']:.0%} | {p['tool_rss_mib']:.1f} MiB | "
                         f"{p['tool_cpu_us_per_object']:.1f} | {p['trips_per_1000']:.2f} |")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(b.out, "curve.md"), "w") as f:
        f.write(text)
    print("\n" + text)


def plot(b, points):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("bench: curve: matplotlib not installed, no plots", file=sys.stderr)
        return
    files = [p for p in points if p["kind"] == "files"]
    sizes = sorted({p["size"] for p in files})
    charts = [("rate", "files/s", "tool_fps", "curl_fps"),
              ("rss", "peak RSS (MiB)", "tool_rss_mib", "curl_rss_mib"),
              ("cpu", "CPU µs per file (user + sys)", "tool_cpu_us_per_file",
               "curl_cpu_us_per_file")]
    for name, ylabel, tool, base in charts:
        fig, ax = plt.subplots(figsize=(6, 4))
        for size in sizes:
            pts = sorted((p for p in files if p["size"] == size), key=lambda p: p["count"])
            xs = [p["count"] for p in pts]
            ax.plot(xs, [p[tool] for p in pts], "o-", label=f"parse-files-migrate, {size // 1024} KiB")
            ax.plot(xs, [p[base] for p in pts], "s--", label=f"curl (download only), {size // 1024} KiB")
        scans = sorted((p for p in points if p["kind"] == "scan"), key=lambda p: p["count"])
        if name == "rss" and scans:
            ax.plot([p["count"] for p in scans], [p["tool_rss_mib"] for p in scans], "^-",
                    label="list (scan of objects)")
        ax.set_xscale("log")
        if name == "rss":
            ax.set_ylim(bottom=0)
        ax.set_xlabel("files (objects for the scan)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(os.path.join(b.out, f"curve-{name}.png"), dpi=100)
        plt.close(fig)
    print(f"bench: curve plots in {b.out}/curve-*.png", file=sys.stderr)
