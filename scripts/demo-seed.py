"""Seed a demo Parse app the way hosted Parse and Parse Server leave it.

Database `pfm_demo` (dropped first): a `_SCHEMA`, a Photo class with top-level, nested-object and
array File references, a `_GlobalConfig` File param, a few hosted-era (`tfss-`, UUID) names whose
bytes are served by the local HTTP server as the stand-in for files.parsetfss.com /
files.parse.com, one legacy name that is missing there, and a malformed value.

Usage: python demo-seed.py MONGO_URI HTTP_ROOT FILE_KEY
"""
import os
import sys
import uuid

import pymongo

mongo_uri, http_root, file_key = sys.argv[1:4]
client = pymongo.MongoClient(mongo_uri)
client.drop_database("pfm_demo")
db = client["pfm_demo"]


def legacy(name, data, host):
    """Write the bytes where the stand-in legacy host serves them."""
    d = os.path.join(http_root, "demo", host, file_key)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)
    return name


names = {}
for i in range(6):
    n = f"tfss-{uuid.uuid4()}-photo{i}.jpg"
    names[n] = legacy(n, os.urandom(1000 + i * 517), "tfss")
old = f"{uuid.uuid4()}-avatar.png"
legacy(old, os.urandom(2048), "parse")
missing = f"tfss-{uuid.uuid4()}-lost.jpg"  # referenced, but the legacy host has no bytes for it
tfss = list(names)

db["_SCHEMA"].insert_many([
    {"_id": "Photo", "objectId": "string", "createdAt": "date", "updatedAt": "date",
     "image": "file", "meta": "object", "gallery": "array", "owner": "*_User", "_metadata": {}},
    {"_id": "_User", "objectId": "string", "username": "string", "avatar": "file"},
])
photos = []
for i, n in enumerate(tfss):
    photos.append({
        "_id": f"photo{i:05d}",
        "image": n,
        "meta": {"thumb": {"__type": "File", "name": old,
                           "url": f"http://files.parse.com/{file_key}/{old}"}},
        "gallery": [{"__type": "File", "name": tfss[(i + 1) % len(tfss)],
                     "url": f"http://files.parsetfss.com/{file_key}/{tfss[(i + 1) % len(tfss)]}"}],
    })
photos.append({"_id": "photoMISS", "image": missing})
photos.append({"_id": "photoBAD", "image": 42})  # malformed: reported, never fatal
db["Photo"].insert_many(photos)
db["_User"].insert_many([{"_id": "user1", "username": "ada", "avatar": tfss[0]},
                         {"_id": "user2", "username": "bob"}])
db["_GlobalConfig"].insert_one({"_id": 1, "params": {
    "splash": {"__type": "File", "name": tfss[1], "url": "http://files.parsetfss.com/x/y"}}})
print(f"seeded pfm_demo: {len(photos)} Photo, 2 _User, 1 _GlobalConfig", file=sys.stderr)
