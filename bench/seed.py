"""Datasets for bench/run (pymongo from the test-services venv).

  seed.py files HTTP_ROOT SET FILE_KEY COUNT SIZE
      COUNT files of SIZE random bytes under HTTP_ROOT/bench/SET/tfss/FILE_KEY/, named
      tfss-<uuid>-f<i>.bin (hosted-Parse names: the tool reads them from the HTTP source, as it
      would from files.parsetfss.com). Files already there with the right size are kept. Prints
      the names, one a line.
  seed.py docs MONGO_URI DATABASE NAMES_FILE NESTED_EVERY
      Drops DATABASE, writes a _SCHEMA and one Bench object per name: `file` holds the bare
      name (a top-level File field); every NESTED_EVERY-th object (0: none) also holds a File
      object under `meta.thumb` pointing at the same file (one more reference, no more bytes).
  seed.py scan MONGO_URI DATABASE COUNT
      Drops DATABASE, writes COUNT Bench objects (~200 bytes each): 10% hold a top-level file,
      a quarter of those also a nested File object in `meta`, one in 80 a File inside the
      `gallery` array. No bytes: for `list` and the raw scan.
"""
import os
import sys
import uuid

import pymongo

SCHEMA = {"_id": "Bench", "objectId": "string", "createdAt": "date", "updatedAt": "date",
          "file": "file", "meta": "object", "gallery": "array", "title": "string"}


def name(i):
    return f"tfss-{uuid.UUID(int=0x5EED << 64 | i)}-f{i}.bin"


def files(root, set_, key, count, size):
    d = os.path.join(root, "bench", set_, "tfss", key)
    os.makedirs(d, exist_ok=True)
    out = []
    for i in range(count):
        n = name(i)
        p = os.path.join(d, n)
        if not (os.path.exists(p) and os.path.getsize(p) == size):
            with open(p + ".tmp", "wb") as f:
                left = size
                while left:
                    chunk = min(left, 8 << 20)
                    f.write(os.urandom(chunk))
                    left -= chunk
            os.replace(p + ".tmp", p)
        out.append(n)
    print("\n".join(out))


def fresh(uri, database):
    client = pymongo.MongoClient(uri)
    client.drop_database(database)
    db = client[database]
    db["_SCHEMA"].insert_one(dict(SCHEMA))
    return db


def insert(coll, docs):
    batch = []
    for d in docs:
        batch.append(d)
        if len(batch) == 10000:
            coll.insert_many(batch, ordered=False)
            batch = []
    if batch:
        coll.insert_many(batch, ordered=False)


def docs(uri, database, names_file, nested_every):
    with open(names_file) as f:
        names = [line.strip() for line in f if line.strip()]
    db = fresh(uri, database)

    def gen():
        for i, n in enumerate(names):
            d = {"_id": f"b{i:09d}", "file": n, "title": "bench object"}
            if nested_every and i % nested_every == 0:
                d["meta"] = {"thumb": {"__type": "File", "name": n,
                                       "url": f"http://files.parsetfss.com/key/{n}"}}
            yield d

    insert(db["Bench"], gen())


SCAN_VERSION = 1


def scan(uri, database, count):
    db = fresh(uri, database)

    def gen():
        for i in range(count):
            d = {"_id": f"s{i:09d}", "title": "x" * 120, "score": i}
            if i % 10 == 0:
                d["file"] = name(i)
                if i % 40 == 0:
                    d["meta"] = {"thumb": {"__type": "File", "name": name(i) + ".thumb",
                                           "url": "http://files.parsetfss.com/key/x"}}
                if i % 80 == 0:
                    d["gallery"] = [1, {"__type": "File", "name": name(i) + ".g"}]
            yield d

    insert(db["Bench"], gen())
    # Written last: bench.py skips seeding a database that has it (1,000,000 objects take
    # minutes to insert into the test server).
    db["_bench_meta"].insert_one({"_id": "scan", "count": count, "version": SCAN_VERSION})


def main(argv):
    cmd, args = argv[1], argv[2:]
    if cmd == "files":
        files(args[0], args[1], args[2], int(args[3]), int(args[4]))
    elif cmd == "docs":
        docs(args[0], args[1], args[2], int(args[3]))
    elif cmd == "scan":
        scan(args[0], args[1], int(args[2]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
