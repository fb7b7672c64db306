"""Server-side copies against copies through the tool (bench/copies).

  copies.py BIN OUT [--small N] [--large N] [--reps R]

For each data set (N × 20 KiB, N × 20 MiB), seeded once into an fs directory and migrated into
the S3 test server under the prefix `old/` (that run is not measured), then, per rep:

* `migrate` old/ → new/ of the same bucket, the S3 server copying (`CopyObject`);
* the same move through the tool: the destination's endpoint spelled `localhost` instead of
  `127.0.0.1`, so the tool sees two services and streams every byte (GET, then PUT);
* `relayout --template '{hash2}/{name}'` of the S3 store (server-side copies), and of the same
  files in an fs store (hard links within the store).

Measured: wall time, the tool's CPU (user+sys from getrusage of the child) and the bytes that
went through its sockets and files (`/proc/PID/io` rchar + wchar, sampled every 20 ms until it
exits: at most the last 20 ms are missed). Prints a Markdown table of medians and writes it to
OUT/copies.md.
"""
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time

import pymongo

S3 = os.environ["PFM_TEST_S3_ENDPOINT"]
MONGO = os.environ["PFM_TEST_MONGO_URI"]
KIB, MIB = 1024, 1024 * 1024


def db_uri(database):
    base, _, query = MONGO.partition("?")
    return f"{base.rstrip('/')}/{database}?{query}"


def s3_table(bucket, prefix, endpoint=S3):
    return (f'type = "s3"\nbucket = "{bucket}"\nendpoint = "{endpoint}"\nregion = "us-east-1"\n'
            f'access_key_id = "test"\nsecret_access_key = "testsecret"\nprefix = "{prefix}"\n')


class Bench:
    def __init__(self, binary, out):
        self.bin, self.out = binary, out
        self.client = pymongo.MongoClient(MONGO)
        self.rows = []

    def run(self, args, expect=0):
        """One run of the tool: (wall s, cpu s, bytes through it, summary)."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.monotonic()
        p = subprocess.Popen([self.bin, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        moved = 0
        while p.poll() is None:
            try:
                with open(f"/proc/{p.pid}/io") as f:
                    io = dict(line.split(": ") for line in f.read().splitlines())
                moved = int(io["rchar"]) + int(io["wchar"])
            except (OSError, KeyError, ValueError):
                pass
            time.sleep(0.02)
        out, err = p.communicate()
        wall = time.monotonic() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if p.returncode != expect:
            sys.exit(f"copies: {' '.join(args)} exited {p.returncode}\n{err.decode()[-3000:]}")
        summary = {}
        for line in out.decode().splitlines():
            d = json.loads(line)
            if d.get("action") == "summary":
                summary = d
        return wall, cpu, moved, summary

    def config(self, name, database, source, destination):
        path = os.path.join(self.out, f"{name}.toml")
        with open(path, "w") as f:
            f.write(f'[mongo]\nuri = "{db_uri(database)}"\n[parse]\napp_id = "benchApp"\n'
                    f'public_server_url = "http://127.0.0.1:1337/parse"\n'
                    f"[source.server]\n{source}\n[destination]\n{destination}\n"
                    "[output]\nprogress = \"never\"\n[run]\nselect = \"all\"\n")
        return path

    def seed(self, tag, count, size):
        """COUNT files of SIZE in an fs directory, an app referencing them, then migrated to
        s3://bench-copies-TAG/old/. Returns (database, fs dir, bucket)."""
        database, bucket = f"bench_copies_{tag}", f"bench-copies-{tag}"
        src = os.path.join(self.out, f"seed-{tag}")
        shutil.rmtree(src, ignore_errors=True)
        os.makedirs(src)
        names = [f"{i:032x}_f{i}.bin" for i in range(count)]
        for n in names:
            with open(os.path.join(src, n), "wb") as f:
                f.write(os.urandom(size))
        self.client.drop_database(database)
        db = self.client[database]
        db["_SCHEMA"].insert_one({"_id": "Bench", "objectId": "string", "file": "file"})
        db["Bench"].insert_many({"_id": f"o{i}", "file": n} for i, n in enumerate(names))
        self.bucket(bucket)
        cfg = self.config(f"seed-{tag}", database, f'type = "fs"\npath = "{src}"\n',
                          s3_table(bucket, "old/"))
        self.run(["-c", cfg, "-q", "migrate", "--yes", "--output", "jsonl"])
        return database, src, bucket

    def bucket(self, bucket):
        """A fresh, empty bucket: s3s-fs keeps each bucket as a directory of its data dir."""
        data = os.path.join(os.environ["PFM_TEST_SERVICES_DIR"], "data", "s3")
        shutil.rmtree(os.path.join(data, bucket), ignore_errors=True)
        os.makedirs(os.path.join(data, bucket))

    def clear(self, bucket, prefix):
        data = os.path.join(os.environ["PFM_TEST_SERVICES_DIR"], "data", "s3", bucket)
        shutil.rmtree(os.path.join(data, prefix.rstrip("/")), ignore_errors=True)

    def measure(self, label, count, size, runs):
        walls = [r[0] for r in runs]
        cpus = [r[1] for r in runs]
        moved = [r[2] for r in runs]
        made = [r[3].get("files", {}).get("server_side", 0) for r in runs]
        self.rows.append((label, f"{count} × {size // MIB} MiB" if size >= MIB
                          else f"{count} × {size // KIB} KiB",
                          statistics.median(walls), statistics.median(cpus),
                          statistics.median(moved), statistics.median(made),
                          count * size))

    def scenario(self, tag, count, size, reps):
        database, src, bucket = self.seed(tag, count, size)
        old = s3_table(bucket, "old/")
        same = self.config(f"same-{tag}", database, old, s3_table(bucket, "new/"))
        other = self.config(f"other-{tag}", database, old,
                            s3_table(bucket, "new/", S3.replace("127.0.0.1", "localhost")))
        for label, cfg in (("S3 prefix move, server-side copies", same),
                           ("S3 prefix move, streamed through the tool", other)):
            runs = []
            for _ in range(reps):
                self.clear(bucket, "new/")
                self.client[database].drop_collection("_FileMigration")
                for c in self.client[database].list_collection_names():
                    if c.startswith("_FileMigration"):
                        self.client[database].drop_collection(c)
                runs.append(self.run(["-c", cfg, "-q", "migrate", "--yes", "--output", "jsonl"]))
            self.measure(label, count, size, runs)
        # relayout: S3 (server-side) and fs (through the tool), from the moved state each rep.
        for label, store in (("relayout on S3 (server-side copies)", s3_table(bucket, "old/")),
                             ("relayout on fs (hard links within the store)",
                              f'type = "fs"\npath = "{src}"\n')):
            runs = []
            for _ in range(reps):
                self.client.drop_database(database + "_rl")
                names = [d["file"] for d in self.client[database]["Bench"].find()]
                db = self.client[database + "_rl"]
                db["_SCHEMA"].insert_one({"_id": "Bench", "objectId": "string", "file": "file"})
                db["Bench"].insert_many({"_id": f"o{i}", "file": n} for i, n in enumerate(names))
                for d in os.listdir(src):
                    if "%2F" in d:
                        os.remove(os.path.join(src, d))
                data = os.path.join(os.environ["PFM_TEST_SERVICES_DIR"], "data", "s3", bucket,
                                    "old")
                for d in os.listdir(data) if os.path.isdir(data) else []:
                    if len(d) == 2 and os.path.isdir(os.path.join(data, d)):
                        shutil.rmtree(os.path.join(data, d))
                cfg = self.config(f"rl-{tag}", database + "_rl", store, store)
                runs.append(self.run(["-c", cfg, "-q", "relayout", "--store", "destination",
                                      "--template", "{hash2}/{name}", "--yes",
                                      "--output", "jsonl"]))
            self.measure(label, count, size, runs)
            self.client.drop_database(database + "_rl")
        self.client.drop_database(database)
        shutil.rmtree(src, ignore_errors=True)

    def table(self):
        lines = ["| run | files | wall (s) | tool CPU (s) | bytes through the tool | of the data "
                 "| server-side copies |", "|---|---|---|---|---|---|---|"]
        for label, files, wall, cpu, moved, made, data in self.rows:
            lines.append(f"| {label} | {files} | {wall:.2f} | {cpu:.2f} | {moved / MIB:.1f} MiB "
                         f"| {moved / data:.2f}× | {made:.0f} |")
        return "\n".join(lines)


def main():
    args = sys.argv[1:]
    if len(args) < 2:
        sys.exit(__doc__)
    binary, out = args[0], args[1]
    opts = dict(zip(args[2::2], args[3::2]))
    small = int(opts.get("--small", 2000))
    large = int(opts.get("--large", 20))
    reps = int(opts.get("--reps", 3))
    os.makedirs(out, exist_ok=True)
    b = Bench(binary, out)
    b.scenario("small", small, 20 * KIB, reps)
    b.scenario("large", large, 20 * MIB, reps)
    text = b.table()
    print(text)
    with open(os.path.join(out, "copies.md"), "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
