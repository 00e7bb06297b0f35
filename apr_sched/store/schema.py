"""The store's schema and its upgrades: one version number, one migration path.

A database written by a newer apr_sched is refused (``SchemaTooNew``) rather than misread;
an older one is upgraded in place, in one transaction, at open.
"""

from __future__ import annotations

from apr_sched.store.base import StoreBase

SCHEMA_VERSION = 5

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS hosts (
    host_id TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    state TEXT NOT NULL,
    registered_at TEXT NOT NULL,
    last_heartbeat TEXT
);
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY,
    job_id TEXT NOT NULL UNIQUE,
    spec TEXT NOT NULL,
    status TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    host_id TEXT,
    submitted_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    exit_code INTEGER,
    signal TEXT,
    queue_seq INTEGER NOT NULL,
    retries_used INTEGER NOT NULL DEFAULT 0,
    run_sec REAL NOT NULL DEFAULT 0,
    resumed_at TEXT,
    pgid INTEGER,
    ending TEXT,
    term_sent_at TEXT,
    owner TEXT,
    project TEXT,
    design TEXT
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status);
CREATE TABLE IF NOT EXISTS attempts (
    job_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    host_id TEXT,
    status TEXT NOT NULL,
    queued_at TEXT,
    started_at TEXT,
    finished_at TEXT,
    exit_code INTEGER,
    signal TEXT,
    reason TEXT,
    run_sec REAL,
    PRIMARY KEY (job_id, attempt)
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    time TEXT NOT NULL,
    kind TEXT NOT NULL,
    job_id TEXT,
    host_id TEXT,
    attempt INTEGER,
    from_state TEXT,
    to_state TEXT,
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_job ON events (job_id, seq);
CREATE TABLE IF NOT EXISTS tokens (
    user TEXT PRIMARY KEY,
    digest TEXT NOT NULL UNIQUE,
    admin INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS idempotency_keys (
    caller TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    created_at REAL NOT NULL,
    status INTEGER NOT NULL,
    reply BLOB NOT NULL,
    PRIMARY KEY (caller, key)
);
CREATE INDEX IF NOT EXISTS idempotency_keys_age ON idempotency_keys (created_at);
CREATE TABLE IF NOT EXISTS batches (
    first_seq INTEGER PRIMARY KEY,
    last_seq INTEGER NOT NULL,
    event_base INTEGER
);
CREATE TABLE IF NOT EXISTS edges (
    seq INTEGER NOT NULL,
    job_id TEXT NOT NULL,
    upstream TEXT NOT NULL,
    condition TEXT NOT NULL,
    PRIMARY KEY (job_id, condition, upstream)
);
CREATE INDEX IF NOT EXISTS edges_upstream ON edges (upstream);
CREATE INDEX IF NOT EXISTS edges_seq ON edges (seq);
"""

_INDEXES = """
CREATE INDEX IF NOT EXISTS jobs_owner ON jobs (owner);
CREATE INDEX IF NOT EXISTS jobs_project ON jobs (project);
CREATE INDEX IF NOT EXISTS jobs_host ON jobs (host_id);
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (finished_at);
CREATE INDEX IF NOT EXISTS attempts_started ON attempts (started_at);
CREATE INDEX IF NOT EXISTS attempts_finished ON attempts (finished_at);
CREATE INDEX IF NOT EXISTS events_time ON events (time);
"""
"""Created after any upgrade, so the columns they cover exist."""


_EDGES_FROM_SPECS = """
INSERT OR IGNORE INTO edges (seq, job_id, upstream, condition)
SELECT jobs.seq, jobs.job_id, refs.value, conditions.key
FROM jobs, json_each(json_extract(jobs.spec, '$.depends_on')) AS conditions,
     json_each(conditions.value) AS refs
WHERE json_type(jobs.spec, '$.depends_on') = 'object'
"""
"""An older database's edges, from the ``depends_on`` its specs kept."""


class SchemaTooNew(RuntimeError):
    pass


def migrate(store: StoreBase) -> None:
    """Create or upgrade the schema; also proves the file is writable (an immutable or
    read-only database opens fine and fails only at its first write)."""
    db = store._db
    with store.transaction():
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                db.execute(statement)
        row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        version = SCHEMA_VERSION if row is None else int(row[0])
        if version > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"{store.path} has schema version {row[0]}; this apr_sched understands "
                f"up to {SCHEMA_VERSION}: upgrade apr_sched"
            )
        if version < 2:  # v2: a stop or timeout intent survives a restart
            db.execute("ALTER TABLE jobs ADD COLUMN ending TEXT")
            db.execute("ALTER TABLE jobs ADD COLUMN term_sent_at TEXT")
        if version < 3:  # v3: filters answered by indexes, not by reading every spec
            for name in ("owner", "project", "design"):
                db.execute(f"ALTER TABLE jobs ADD COLUMN {name} TEXT")
                db.execute(f"UPDATE jobs SET {name}=json_extract(spec, '$.{name}')")
        # v4: the batches table (created by _SCHEMA above) stages large batches; an
        # older database has none in flight, so there is nothing to convert.
        if version < 5:  # v5: edges by upstream, from the specs that name dependencies
            db.execute(_EDGES_FROM_SPECS)
        for statement in _INDEXES.split(";"):
            if statement.strip():
                db.execute(statement)
        db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)",
                   (str(SCHEMA_VERSION),))
