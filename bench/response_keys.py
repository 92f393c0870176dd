"""Postgres's CPU per recorded response for each way of keying the `responses` table:
binary COPY of 640-row groups (as the control plane writes them) into a table preloaded
with PRELOAD rows, autovacuum off, a checkpoint before; the backend's CPU from /proc.
Runs on the machine's Postgres in a database of its own (dropped at the end).

  pip install 'psycopg[binary]==3.2.3'
  python3 bench/response_keys.py [PRELOAD=2000000] [GROUPS=200] [KIND ...]

KIND: text (Mantle's id as the key), textc (the same, COLLATE "C"), uuid (a digest of
the id, as strata keys it), uuidbrin (that and a BRIN index on created_at, for the
purge), hash (a hash index on the id, not unique), excl (an
exclusion constraint on a hash of the id, unique).
"""

import datetime
import hashlib
import os
import sys
import uuid

import psycopg

ADMIN = os.environ.get("BENCH_POSTGRES", "host=127.0.0.1 user=postgres dbname=postgres")
DATABASE = "strata_bench_response_keys"
GROUP = 640
COLUMNS = ("id text, project_id uuid, key_id uuid, model text, background bool, "
           "created_at timestamptz, status text, metered_at timestamptz, claimed_by text, "
           "claimed_until timestamptz")
TABLES = {
    "text": f"CREATE TABLE r ({COLUMNS}, PRIMARY KEY (id))",
    "textc": "CREATE TABLE r (" + COLUMNS.replace("id text", 'id text COLLATE "C"', 1) + ", PRIMARY KEY (id))",
    "uuid": f"CREATE TABLE r (key uuid PRIMARY KEY, {COLUMNS})",
    "uuidbrin": f"CREATE TABLE r (key uuid PRIMARY KEY, {COLUMNS}); CREATE INDEX ON r USING brin (created_at)",
    "hash": f"CREATE TABLE r ({COLUMNS}); CREATE INDEX ON r USING hash (id)",
    "excl": f"CREATE TABLE r ({COLUMNS}, EXCLUDE USING hash (id WITH =))",
}
TYPES = ["text", "uuid", "uuid", "text", "bool", "timestamptz", "text", "timestamptz", "text", "timestamptz"]
NAMES = "id, project_id, key_id, model, background, created_at, status, metered_at, claimed_by, claimed_until"


def backend_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def digest(response_id):
    return uuid.UUID(bytes=hashlib.sha256(response_id.encode()).digest()[:16])


def run(kind, preload, groups):
    keyed = kind.startswith("uuid")
    with psycopg.connect(f"{ADMIN} dbname={DATABASE}", autocommit=True) as db:
        db.execute("DROP TABLE IF EXISTS r")
        for statement in TABLES[kind].split(";"):
            db.execute(statement)
        db.execute("ALTER TABLE r SET (autovacuum_enabled = false)")
        db.execute("CREATE INDEX ON r (created_at) WHERE metered_at IS NULL")
        key = "encode(substring(sha256(convert_to(i, 'UTF8')) FROM 1 FOR 16), 'hex')::uuid, " if keyed else ""
        db.execute(
            f"INSERT INTO r SELECT {key} i, gen_random_uuid(), gen_random_uuid(), 'openai.gpt-oss-20b', "
            "false, now(), 'completed', now(), NULL, NULL "
            f"FROM (SELECT 'resp_' || md5(g::text || random()::text) AS i FROM generate_series(1, {preload}) g) s"
        )
        db.execute("CHECKPOINT")
        pid = db.execute("SELECT pg_backend_pid()").fetchone()[0]
        project, api_key = uuid.uuid4(), uuid.uuid4()
        now = datetime.datetime.now(datetime.timezone.utc)
        names = ("key, " if keyed else "") + NAMES
        types = (["uuid"] if keyed else []) + TYPES
        before = backend_cpu(pid)
        for _ in range(groups):
            with db.transaction(), db.cursor().copy(f"COPY r ({names}) FROM STDIN WITH (FORMAT binary)") as copy:
                copy.set_types(types)
                for _ in range(GROUP):
                    response_id = "resp_" + os.urandom(16).hex()
                    row = [response_id, project, api_key, "openai.gpt-oss-20b", False, now, "completed", now, None, None]
                    copy.write_row([digest(response_id)] + row if keyed else row)
        spent = backend_cpu(pid) - before
        print(f"{kind}: {spent / (groups * GROUP) * 1e6:.2f} µs of Postgres CPU per row "
              f"({groups} groups of {GROUP} into {preload:,} rows)")


def main():
    args = sys.argv[1:]
    preload = int(args.pop(0)) if args and args[0].isdigit() else 2_000_000
    groups = int(args.pop(0)) if args and args[0].isdigit() else 200
    kinds = args or ["text", "uuid"]
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
        admin.execute(f"CREATE DATABASE {DATABASE}")
    try:
        for kind in kinds:
            run(kind, preload, groups)
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {DATABASE}")


if __name__ == "__main__":
    main()
