-- rotary SQLite schema, version 1.
-- Times are INTEGER unix microseconds (UTC); durations are INTEGER nanoseconds.

CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value BLOB
);

CREATE TABLE regions (
    name            TEXT PRIMARY KEY,
    fingerprint_key BLOB,
    created_at      INTEGER NOT NULL
);

CREATE TABLE master_keys (
    id               TEXT PRIMARY KEY,
    region           TEXT NOT NULL,
    alias            TEXT,            -- NULL when the key has no alias
    description      TEXT NOT NULL DEFAULT '',
    state            TEXT NOT NULL,
    primary_version  INTEGER NOT NULL,
    rotation_period  INTEGER NOT NULL DEFAULT 0,
    next_rotation_at INTEGER,
    deletion_date    INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE UNIQUE INDEX master_keys_region_alias ON master_keys (region, alias) WHERE alias IS NOT NULL;

CREATE TABLE key_versions (
    key_id     TEXT NOT NULL REFERENCES master_keys (id) ON DELETE CASCADE,
    version    INTEGER NOT NULL,
    material   BLOB,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (key_id, version)
);

CREATE TABLE secrets (
    name         TEXT PRIMARY KEY,    -- BINARY collation: byte order, used for prefix range scans
    type         TEXT NOT NULL,
    region       TEXT NOT NULL,
    key_id       TEXT NOT NULL,
    description  TEXT NOT NULL DEFAULT '',
    tags         TEXT,                -- JSON object or NULL
    metadata     TEXT,                -- JSON object or NULL
    next_version INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    deleted_at   INTEGER,
    purge_at     INTEGER
);
CREATE INDEX secrets_purge ON secrets (purge_at) WHERE deleted_at IS NOT NULL;

CREATE TABLE secret_versions (
    secret      TEXT NOT NULL REFERENCES secrets (name) ON DELETE CASCADE,
    version     INTEGER NOT NULL,
    envelope    BLOB,
    key_id      TEXT NOT NULL,
    key_version INTEGER NOT NULL,
    fingerprint TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    created_by  TEXT NOT NULL DEFAULT '',
    reason      TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (secret, version)
);
CREATE INDEX secret_versions_key ON secret_versions (key_id, key_version, secret, version);

CREATE TABLE secret_stages (
    secret  TEXT NOT NULL REFERENCES secrets (name) ON DELETE CASCADE,
    stage   TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (secret, stage),
    FOREIGN KEY (secret, version) REFERENCES secret_versions (secret, version)
);
CREATE INDEX secret_stages_version ON secret_stages (secret, version);

CREATE TABLE rotations (
    secret               TEXT PRIMARY KEY REFERENCES secrets (name) ON DELETE CASCADE,
    rotator              TEXT NOT NULL,
    config               BLOB,
    schedule             TEXT NOT NULL DEFAULT '',
    window_ns            INTEGER NOT NULL DEFAULT 0,
    enabled              INTEGER NOT NULL DEFAULT 0,
    next_due_at          INTEGER,
    last_rotated_at      INTEGER,
    last_error           TEXT NOT NULL DEFAULT '',
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    lease_owner          TEXT NOT NULL DEFAULT '',
    lease_expires_at     INTEGER,
    updated_at           INTEGER NOT NULL
);
CREATE INDEX rotations_due ON rotations (next_due_at) WHERE enabled = 1;

CREATE TABLE rotation_runs (
    id              TEXT PRIMARY KEY,
    secret          TEXT NOT NULL REFERENCES secrets (name) ON DELETE CASCADE,
    run_trigger     TEXT NOT NULL DEFAULT '',
    step            TEXT NOT NULL DEFAULT '',
    state           TEXT NOT NULL,
    pending_version INTEGER NOT NULL DEFAULT 0,
    attempt         INTEGER NOT NULL DEFAULT 0,
    options         BLOB,
    started_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    ended_at        INTEGER,
    error           TEXT NOT NULL DEFAULT ''
);
CREATE INDEX rotation_runs_secret ON rotation_runs (secret, started_at);
CREATE INDEX rotation_runs_running ON rotation_runs (started_at) WHERE state = 'running';

CREATE TABLE run_steps (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id     TEXT NOT NULL REFERENCES rotation_runs (id) ON DELETE CASCADE,
    step       TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    ended_at   INTEGER,
    result     TEXT NOT NULL DEFAULT '',
    error      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX run_steps_run ON run_steps (run_id, id);

CREATE TABLE outbox (
    id               INTEGER PRIMARY KEY AUTOINCREMENT, -- never reused
    type             TEXT NOT NULL,
    secret           TEXT NOT NULL DEFAULT '',
    version          INTEGER NOT NULL DEFAULT 0,
    payload          BLOB,
    created_at       INTEGER NOT NULL,
    delivered_at     INTEGER,
    lease_owner      TEXT NOT NULL DEFAULT '',
    lease_expires_at INTEGER
);
CREATE INDEX outbox_undelivered ON outbox (id) WHERE delivered_at IS NULL;
CREATE INDEX outbox_delivered ON outbox (created_at) WHERE delivered_at IS NOT NULL;

CREATE TABLE tokens (
    id         TEXT PRIMARY KEY,
    hash       BLOB NOT NULL UNIQUE,
    name       TEXT NOT NULL DEFAULT '',
    policies   TEXT,                  -- JSON array or NULL
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER
);

CREATE TABLE policies (
    name       TEXT PRIMARY KEY,
    document   BLOB,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE audit (
    seq        INTEGER PRIMARY KEY,
    time       INTEGER NOT NULL,
    token_id   TEXT NOT NULL DEFAULT '',
    action     TEXT NOT NULL DEFAULT '',
    target     TEXT NOT NULL DEFAULT '',
    result     TEXT NOT NULL DEFAULT '',
    request_id TEXT NOT NULL DEFAULT '',
    detail     TEXT NOT NULL DEFAULT '',
    prev_hash  BLOB,
    hash       BLOB
);
CREATE INDEX audit_target ON audit (target, seq);
CREATE INDEX audit_time ON audit (time);

CREATE TABLE plugins (
    name       TEXT PRIMARY KEY,
    path       TEXT NOT NULL,
    sha256     TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE hooks (
    name         TEXT PRIMARY KEY,
    on_event     TEXT NOT NULL,
    secrets_glob TEXT NOT NULL DEFAULT '',
    kind         TEXT NOT NULL,
    target       TEXT NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL
);

CREATE TABLE locks (
    name       TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
