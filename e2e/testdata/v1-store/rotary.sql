PRAGMA foreign_keys=OFF;
BEGIN TRANSACTION;
CREATE TABLE schema_migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT NOT NULL,
		applied_at INTEGER NOT NULL);
INSERT INTO schema_migrations VALUES(1,'0001_init.sql',1796231587327233);
INSERT INTO schema_migrations VALUES(2,'0002_audit_head.sql',1796231587327451);
CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value BLOB
);
INSERT INTO meta VALUES('kms.root_check',X'01159de797d9213dae6572b3de81819f31234a162f8864f7a08eb00af36aba5c4a');
INSERT INTO meta VALUES('auth.root_token_created',X'323032362d31322d30325431373a31333a30375a');
CREATE TABLE regions (
    name            TEXT PRIMARY KEY,
    fingerprint_key BLOB,
    created_at      INTEGER NOT NULL
);
INSERT INTO regions VALUES('default',X'01d9c86d54faf5422523905889a76d38133c771873dac3bf7ede9231da6aada5067ce6a42922d41039c0cd62baddca475689836e538ee55a373d72ea20',1796231587339680);
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
INSERT INTO master_keys VALUES('mk-f9c24568b8ae2747','default','default','default key of region default','enabled',1,0,NULL,NULL,1796231587796806,1796231587796806);
CREATE TABLE key_versions (
    key_id     TEXT NOT NULL REFERENCES master_keys (id) ON DELETE CASCADE,
    version    INTEGER NOT NULL,
    material   BLOB,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (key_id, version)
);
INSERT INTO key_versions VALUES('mk-f9c24568b8ae2747',1,X'01f0947a0b397e0337ffe2dff04c3bf205b42ef8988eaff22d388f3eac803f6de8ddf9be3be01ab2d8c8093850a921714119a550632c1c2c2f90336837',1796231587796806);
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
INSERT INTO secrets VALUES('app/legacy','generic','default','mk-f9c24568b8ae2747','',NULL,NULL,3,1796231587798554,1796231588000058,NULL,NULL);
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
INSERT INTO secret_versions VALUES('app/legacy',1,X'0101136d6b2d663963323435363862386165323734370000000143c1345bbb56fd6a6dcb18fb0039d1bf5a63aa2758f9b12f90ced1f53e2ae66498416bae9f946f9f77e3f0c734241ffa14302b8c5ebd9bb7e52f03e94159779d3fea50021ec3e78df24a95749e59b5738fa54126432002201ae04485551be6b5a2f7249c','mk-f9c24568b8ae2747',1,'hmac-sha256:4fb4bf451bf8558f12c51acb29d94cfb8c33bdd23432baa85bc1ac1cead5e149',1796231587798580,'tok_aa2cdd97cb53','create');
INSERT INTO secret_versions VALUES('app/legacy',2,X'0101136d6b2d6639633234353638623861653237343700000001a195cfa331082a59bce13a0cd6e887abbf52e59ecb587e2413d9fff0af65e27d972b21e673ea93b6744f9870d06ba3c25a0babeb6191120aa14bfefa78a47025b1fc2a27784b24e39aa7d60df10c29015cd001b5fcc4f7da5058','mk-f9c24568b8ae2747',1,'hmac-sha256:64b5329f97ae4caaa326a53d679981bdc978137a04e5839c5a8d069f236bb2a0',1796231587999967,'tok_aa2cdd97cb53','put');
CREATE TABLE secret_stages (
    secret  TEXT NOT NULL REFERENCES secrets (name) ON DELETE CASCADE,
    stage   TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (secret, stage),
    FOREIGN KEY (secret, version) REFERENCES secret_versions (secret, version)
);
INSERT INTO secret_stages VALUES('app/legacy','current',2);
INSERT INTO secret_stages VALUES('app/legacy','previous',1);
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
CREATE TABLE run_steps (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id     TEXT NOT NULL REFERENCES rotation_runs (id) ON DELETE CASCADE,
    step       TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    ended_at   INTEGER,
    result     TEXT NOT NULL DEFAULT '',
    error      TEXT NOT NULL DEFAULT ''
);
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
INSERT INTO outbox VALUES(1,'version_created','app/legacy',1,X'7b226576656e74223a2276657273696f6e5f63726561746564222c22736563726574223a226170702f6c6567616379222c2276657273696f6e223a312c22737461676573223a5b2263757272656e74225d2c2266696e6765727072696e74223a22686d61632d7368613235363a34666234626634353162663835353866313263353161636232396439346366623863333362646432333433326261613835626331616331636561643565313439222c22726567696f6e223a2264656661756c74222c22726561736f6e223a22637265617465222c226174223a22323032362d31322d30325431373a31333a30372e3739383838323037325a227d',1796231587798882,NULL,'',NULL);
INSERT INTO outbox VALUES(2,'version_created','app/legacy',2,X'7b226576656e74223a2276657273696f6e5f63726561746564222c22736563726574223a226170702f6c6567616379222c2276657273696f6e223a322c22737461676573223a5b2263757272656e74225d2c2266696e6765727072696e74223a22686d61632d7368613235363a36346235333239663937616534636161613332366135336436373939383162646339373831333761303465353833396335613864303639663233366262326130222c22726567696f6e223a2264656661756c74222c22726561736f6e223a22707574222c226174223a22323032362d31322d30325431373a31333a30382e3030303232303434355a227d',1796231588000220,NULL,'',NULL);
CREATE TABLE tokens (
    id         TEXT PRIMARY KEY,
    hash       BLOB NOT NULL UNIQUE,
    name       TEXT NOT NULL DEFAULT '',
    policies   TEXT,                  -- JSON array or NULL
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER
);
INSERT INTO tokens VALUES('tok_aa2cdd97cb53',X'9ff4e1668455c4da331391881e94bf20730ae63b630411a758d68c3e8018dea4','root','["root"]',1796231587339912,NULL,NULL);
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
INSERT INTO audit VALUES(1,1796231587799407,'tok_aa2cdd97cb53','secret.create','app/legacy','ok','2104640e8acfd5dd','type=generic',X'0000000000000000000000000000000000000000000000000000000000000000',X'950f9de74c4e0d1f605e4c7f54f2fb3149b9e5f4091967b6b23f0a6a50cc5d43');
INSERT INTO audit VALUES(2,1796231587864264,'tok_aa2cdd97cb53','secret.read','app/legacy','ok','c7c02b8caa9c5893','version=1',X'950f9de74c4e0d1f605e4c7f54f2fb3149b9e5f4091967b6b23f0a6a50cc5d43',X'ddf177d436d6905bfd26a89d16390fd5ae8da1dee35320947d0925d7ef3eb062');
INSERT INTO audit VALUES(3,1796231587914322,'tok_aa2cdd97cb53','secret.read','app/missing','not_found','77a3d7298975fb88','app/missing: secret not found',X'ddf177d436d6905bfd26a89d16390fd5ae8da1dee35320947d0925d7ef3eb062',X'dc76a86df8f4ad79b875c7751235a233cf0d2929519d06fbb137889d0452bc7e');
INSERT INTO audit VALUES(4,1796231588000301,'tok_aa2cdd97cb53','secret.put','app/legacy','ok','2e57e3025f552e41','version=2',X'dc76a86df8f4ad79b875c7751235a233cf0d2929519d06fbb137889d0452bc7e',X'8e11e57421e9820bbb37b2996bbda22e588a30fe36dc1db8bf5857df9e1b63eb');
INSERT INTO audit VALUES(5,1796231588237632,'tok_aa2cdd97cb53','audit.list','audit','ok','4016e2781fa6fdcc','',X'8e11e57421e9820bbb37b2996bbda22e588a30fe36dc1db8bf5857df9e1b63eb',X'1c39513cbbfaf629ae27e474207ae9e387a834926d53573949d321871ba5434d');
INSERT INTO audit VALUES(6,1796231588391623,'tok_aa2cdd97cb53','audit.verify','audit','ok','6ffaa2c0f83fedda','',X'1c39513cbbfaf629ae27e474207ae9e387a834926d53573949d321871ba5434d',X'68d3d5dc38a6969e960e9ef32435d018720d189343ef2114894323f1d8da3704');
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
CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash BLOB
);
INSERT INTO audit_head VALUES(1,6,X'68d3d5dc38a6969e960e9ef32435d018720d189343ef2114894323f1d8da3704');
DELETE FROM sqlite_sequence;
INSERT INTO sqlite_sequence VALUES('outbox',2);
CREATE UNIQUE INDEX master_keys_region_alias ON master_keys (region, alias) WHERE alias IS NOT NULL;
CREATE INDEX secrets_purge ON secrets (purge_at) WHERE deleted_at IS NOT NULL;
CREATE INDEX secret_versions_key ON secret_versions (key_id, key_version, secret, version);
CREATE INDEX secret_stages_version ON secret_stages (secret, version);
CREATE INDEX rotations_due ON rotations (next_due_at) WHERE enabled = 1;
CREATE INDEX rotation_runs_secret ON rotation_runs (secret, started_at);
CREATE INDEX rotation_runs_running ON rotation_runs (started_at) WHERE state = 'running';
CREATE INDEX run_steps_run ON run_steps (run_id, id);
CREATE INDEX outbox_undelivered ON outbox (id) WHERE delivered_at IS NULL;
CREATE INDEX outbox_delivered ON outbox (created_at) WHERE delivered_at IS NOT NULL;
CREATE INDEX audit_target ON audit (target, seq);
CREATE INDEX audit_time ON audit (time);
COMMIT;
