"""SQLite's CPU per recorded response, and what its settings change: groups of GROUP
rows (as the control plane writes them) inserted into the `responses` table as strata
creates it on SQLite (a 16-byte random key, the partial index), preloaded with PRELOAD
rows, in WAL mode with synchronous=NORMAL as strata opens it; this process's CPU
(SQLite runs in it) and wall time per row, for each variant in turn, twice.

  python3 bench/sqlite_responses.py [PRELOAD=800000] [GROUP=300] [GROUPS=300]

Uses a file of its own under /tmp (deleted at the end); nothing to install.
"""

import os
import resource
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid

PRELOAD = int(sys.argv[1]) if len(sys.argv) > 1 else 800_000
GROUP = int(sys.argv[2]) if len(sys.argv) > 2 else 300
GROUPS = int(sys.argv[3]) if len(sys.argv) > 3 else 300
# Each variant on a copy of the same preloaded table: (name, page size, pragmas).
VARIANTS = [
    ("as strata opens it", 4096, []),
    ("cache_size 32 MiB", 4096, ["cache_size=-32768"]),
    ("mmap_size 256 MiB", 4096, ["mmap_size=268435456"]),
    ("wal_autocheckpoint 10000 pages", 4096, ["wal_autocheckpoint=10000"]),
    ("page_size 1024", 1024, []),
]
TABLE = """CREATE TABLE responses ("key" uuid_text NOT NULL PRIMARY KEY,
  "id" varchar(256) NOT NULL, "project_id" uuid_text NOT NULL,
  "key_id" uuid_text NOT NULL, "model" varchar(128) NOT NULL,
  "background" boolean NOT NULL, "created_at" timestamp_with_timezone_text NOT NULL,
  "status" varchar(32) NOT NULL, "metered_at" timestamp_with_timezone_text NULL,
  "claimed_by" varchar(128) NULL, "claimed_until" timestamp_with_timezone_text NULL)"""
INDEX = """CREATE INDEX "responses_unmetered" ON "responses" ("created_at")
  WHERE "metered_at" IS NULL"""
INSERT = ("INSERT INTO responses VALUES (?,?,?,?,?,?,?,?,?,?,?) "
          "ON CONFLICT (key) DO NOTHING")
PROJECT, KEY = uuid.uuid4().bytes, uuid.uuid4().bytes
NOW = "2026-12-07 11:30:00.123456 +00:00"


def row():
    return (os.urandom(16), "resp_" + os.urandom(16).hex(), PROJECT, KEY,
            "openai.gpt-oss-20b", 0, NOW, "completed", NOW, None, None)


def preload(path, page_size):
    db = sqlite3.connect(path, isolation_level=None)
    db.execute(f"PRAGMA page_size={page_size}")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(TABLE)
    db.execute(INDEX)
    db.execute("BEGIN")
    db.executemany(INSERT, (row() for _ in range(PRELOAD)))
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def measure(path, pragmas):
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA synchronous=NORMAL")
    for pragma in pragmas:
        db.execute(f"PRAGMA {pragma}")
    groups = [[row() for _ in range(GROUP)] for _ in range(GROUPS)]
    before, started = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    for group in groups:
        db.execute("BEGIN IMMEDIATE")
        db.executemany(INSERT, group)
        db.execute("COMMIT")
    after, wall = resource.getrusage(resource.RUSAGE_SELF), time.monotonic() - started
    db.close()
    n = GROUP * GROUPS
    user = (after.ru_utime - before.ru_utime) * 1e6 / n
    system = (after.ru_stime - before.ru_stime) * 1e6 / n
    return user + system, system, wall * 1e6 / n


def main():
    print(f"SQLite {sqlite3.sqlite_version}: {GROUPS} groups of {GROUP} rows into a table "
          f"of {PRELOAD:,}; µs per row (CPU, of it in the kernel; wall)")
    with tempfile.TemporaryDirectory() as work:
        run = os.path.join(work, "run.db")
        for name, page_size, pragmas in VARIANTS:
            preloaded = os.path.join(work, f"preloaded-{page_size}.db")
            if not os.path.exists(preloaded):
                preload(preloaded, page_size)
            for _ in range(2):
                for suffix in ("-wal", "-shm"):
                    if os.path.exists(run + suffix):
                        os.remove(run + suffix)
                shutil.copyfile(preloaded, run)
                cpu, system, wall = measure(run, pragmas)
                print(f"{name:32s} CPU {cpu:5.2f} (kernel {system:4.2f}), wall {wall:5.2f}")


if __name__ == "__main__":
    main()
