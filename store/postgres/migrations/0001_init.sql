-- rotary PostgreSQL schema, version 1.
-- Times are timestamptz (microseconds, compared and returned as UTC);
-- durations are bigint nanoseconds. Names use COLLATE "C" so they sort in
-- byte order as on SQLite and prefix LIKE scans can use the btree indexes.

CREATE TABLE meta (
    name  TEXT COLLATE "C" PRIMARY KEY,
    value BYTEA
);

CREATE TABLE regions (
    name            TEXT COLLATE "C" PRIMARY KEY,
    fingerprint_key BYTEA,
    created_at      TIMESTAMPTZ NOT NULL
);

CREATE TABLE master_keys (
    id               TEXT COLLATE "C" PRIMARY KEY,
    region           TEXT COLLATE "C" NOT NULL,
    alias            TEXT COLLATE "C",   -- NULL when the key has no alias
    description      TEXT NOT NULL DEFAULT '',
    state            TEXT NOT NULL,
    primary_version  INTEGER NOT NULL,
    rotation_period  BIGINT NOT NULL DEFAULT 0,
    next_rotation_at TIMESTAMPTZ,
    deletion_date    TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX master_keys_region_alias ON master_keys (region, alias) WHERE alias IS NOT NULL;

CREATE TABLE key_versions (
    key_id     TEXT COLLATE "C" NOT NULL REFERENCES master_keys (id) ON DELETE CASCADE,
    version    INTEGER NOT NULL,
    material   BYTEA,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (key_id, version)
);

CREATE TABLE secrets (
    name         TEXT COLLATE "C" PRIMARY KEY,   -- serves ordered and prefix (LIKE 'p%') scans
    type         TEXT NOT NULL,
    region       TEXT NOT NULL,
    key_id       TEXT NOT NULL,
    description  TEXT NOT NULL DEFAULT '',
    tags         JSONB,
    metadata     JSONB,
    next_version BIGINT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    deleted_at   TIMESTAMPTZ,
    purge_at     TIMESTAMPTZ
);
CREATE INDEX secrets_purge ON secrets (purge_at) WHERE deleted_at IS NOT NULL;

CREATE TABLE secret_versions (
    secret      TEXT COLLATE "C" NOT NULL REFERENCES secrets (name) ON DELETE CASCADE,
    version     BIGINT NOT NULL,
    envelope    BYTEA,
    key_id      TEXT COLLATE "C" NOT NULL,
    key_version INTEGER NOT NULL,
    fingerprint TEXT NOT NULL DEFAULT '',
    created_at  TIMESTAMPTZ NOT NULL,
    created_by  TEXT NOT NULL DEFAULT '',
    reason      TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (secret, version)
);
CREATE INDEX secret_versions_key ON secret_versions (key_id, key_version, secret, version);

CREATE TABLE secret_stages (
    secret  TEXT COLLATE "C" NOT NULL REFERENCES secrets (name) ON DELETE CASCADE,
    stage   TEXT COLLATE "C" NOT NULL,
    version BIGINT NOT NULL,
    PRIMARY KEY (secret, stage),
    FOREIGN KEY (secret, version) REFERENCES secret_versions (secret, version)
);
CREATE INDEX secret_stages_version ON secret_stages (secret, version);

CREATE TABLE rotations (
    secret               TEXT COLLATE "C" PRIMARY KEY REFERENCES secrets (name) ON DELETE CASCADE,
    rotator              TEXT NOT NULL,
    config               BYTEA,
    schedule             TEXT NOT NULL DEFAULT '',
    window_ns            BIGINT NOT NULL DEFAULT 0,
    enabled              BOOLEAN NOT NULL DEFAULT false,
    next_due_at          TIMESTAMPTZ,
    last_rotated_at      TIMESTAMPTZ,
    last_error           TEXT NOT NULL DEFAULT '',
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    lease_owner          TEXT NOT NULL DEFAULT '',
    lease_expires_at     TIMESTAMPTZ,
    updated_at           TIMESTAMPTZ NOT NULL
);
CREATE INDEX rotations_due ON rotations (next_due_at) WHERE enabled;

CREATE TABLE rotation_runs (
    id              TEXT COLLATE "C" PRIMARY KEY,
    secret          TEXT COLLATE "C" NOT NULL REFERENCES secrets (name) ON DELETE CASCADE,
    run_trigger     TEXT NOT NULL DEFAULT '',
    step            TEXT NOT NULL DEFAULT '',
    state           TEXT NOT NULL,
    pending_version BIGINT NOT NULL DEFAULT 0,
    attempt         INTEGER NOT NULL DEFAULT 0,
    options         BYTEA,
    started_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    ended_at        TIMESTAMPTZ,
    error           TEXT NOT NULL DEFAULT ''
);
CREATE INDEX rotation_runs_secret ON rotation_runs (secret, started_at);
CREATE INDEX rotation_runs_running ON rotation_runs (started_at) WHERE state = 'running';

CREATE TABLE run_steps (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id     TEXT COLLATE "C" NOT NULL REFERENCES rotation_runs (id) ON DELETE CASCADE,
    step       TEXT NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    ended_at   TIMESTAMPTZ,
    result     TEXT NOT NULL DEFAULT '',
    error      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX run_steps_run ON run_steps (run_id, id);

CREATE TABLE outbox (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    type             TEXT NOT NULL,
    secret           TEXT COLLATE "C" NOT NULL DEFAULT '',
    version          BIGINT NOT NULL DEFAULT 0,
    payload          BYTEA,
    created_at       TIMESTAMPTZ NOT NULL,
    delivered_at     TIMESTAMPTZ,
    lease_owner      TEXT NOT NULL DEFAULT '',
    lease_expires_at TIMESTAMPTZ
);
CREATE INDEX outbox_undelivered ON outbox (id) WHERE delivered_at IS NULL;
CREATE INDEX outbox_delivered ON outbox (created_at) WHERE delivered_at IS NOT NULL;

CREATE TABLE tokens (
    id         TEXT COLLATE "C" PRIMARY KEY,
    hash       BYTEA NOT NULL UNIQUE,
    name       TEXT NOT NULL DEFAULT '',
    policies   JSONB,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ,
    revoked_at TIMESTAMPTZ
);

CREATE TABLE policies (
    name       TEXT COLLATE "C" PRIMARY KEY,
    document   BYTEA,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE audit (
    seq        BIGINT PRIMARY KEY,
    time       TIMESTAMPTZ NOT NULL,
    token_id   TEXT NOT NULL DEFAULT '',
    action     TEXT NOT NULL DEFAULT '',
    target     TEXT COLLATE "C" NOT NULL DEFAULT '',
    result     TEXT NOT NULL DEFAULT '',
    request_id TEXT NOT NULL DEFAULT '',
    detail     TEXT NOT NULL DEFAULT '',
    prev_hash  BYTEA,
    hash       BYTEA
);
CREATE INDEX audit_target ON audit (target, seq);
CREATE INDEX audit_time ON audit (time);

-- One row: the newest audit record. AuditHead inside a transaction locks it
-- (SELECT ... FOR UPDATE) so that concurrent appenders serialize.
CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  BIGINT NOT NULL,
    hash BYTEA
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, NULL);

CREATE TABLE plugins (
    name       TEXT COLLATE "C" PRIMARY KEY,
    path       TEXT NOT NULL,
    sha256     TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE hooks (
    name         TEXT COLLATE "C" PRIMARY KEY,
    on_event     TEXT NOT NULL,
    secrets_glob TEXT NOT NULL DEFAULT '',
    kind         TEXT NOT NULL,
    target       TEXT NOT NULL DEFAULT '',
    created_at   TIMESTAMPTZ NOT NULL
);

CREATE TABLE locks (
    name       TEXT COLLATE "C" PRIMARY KEY,
    owner      TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
