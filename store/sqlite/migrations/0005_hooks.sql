-- Function hooks: how each is run, its sealed webhook signing secret, and
-- its delivery state; one row per hook and outbox event to deliver
-- (0004 is taken by the plugin catalog).
ALTER TABLE hooks ADD COLUMN shell INTEGER NOT NULL DEFAULT 0;
ALTER TABLE hooks ADD COLUMN timeout INTEGER NOT NULL DEFAULT 0;       -- nanoseconds; 0: the default
ALTER TABLE hooks ADD COLUMN sealed_secret BLOB;                      -- AES-GCM under the hook key, AAD = name
ALTER TABLE hooks ADD COLUMN delivered INTEGER NOT NULL DEFAULT 0;
ALTER TABLE hooks ADD COLUMN failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE hooks ADD COLUMN dropped INTEGER NOT NULL DEFAULT 0;
ALTER TABLE hooks ADD COLUMN last_delivery_at INTEGER;
ALTER TABLE hooks ADD COLUMN last_error TEXT NOT NULL DEFAULT '';
ALTER TABLE hooks ADD COLUMN failing INTEGER NOT NULL DEFAULT 0;

CREATE TABLE hook_deliveries (
    hook             TEXT NOT NULL,
    event_id         INTEGER NOT NULL,
    secret           TEXT NOT NULL DEFAULT '',
    payload          BLOB,
    event_at         INTEGER NOT NULL,
    state            TEXT NOT NULL,             -- pending, done, failed, dropped
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    last_error       TEXT NOT NULL DEFAULT '',
    lease_owner      TEXT NOT NULL DEFAULT '',
    lease_expires_at INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    PRIMARY KEY (hook, event_id)
);
CREATE INDEX hook_deliveries_pending ON hook_deliveries (hook, secret, event_id) WHERE state = 'pending';
CREATE INDEX hook_deliveries_due ON hook_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX hook_deliveries_ended ON hook_deliveries (updated_at) WHERE state <> 'pending';
CREATE INDEX outbox_secret_undelivered ON outbox (secret, id) WHERE delivered_at IS NULL;
