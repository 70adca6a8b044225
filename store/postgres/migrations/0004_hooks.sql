-- Function hooks: how each is run, its sealed webhook signing secret, and
-- its delivery state; one row per hook and outbox event to deliver
-- (0003 is taken by the plugin catalog).
ALTER TABLE hooks ADD COLUMN shell BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE hooks ADD COLUMN timeout BIGINT NOT NULL DEFAULT 0;        -- nanoseconds; 0: the default
ALTER TABLE hooks ADD COLUMN sealed_secret BYTEA;                     -- AES-GCM under the hook key, AAD = name
ALTER TABLE hooks ADD COLUMN delivered BIGINT NOT NULL DEFAULT 0;
ALTER TABLE hooks ADD COLUMN failures BIGINT NOT NULL DEFAULT 0;
ALTER TABLE hooks ADD COLUMN dropped BIGINT NOT NULL DEFAULT 0;
ALTER TABLE hooks ADD COLUMN last_delivery_at TIMESTAMPTZ;
ALTER TABLE hooks ADD COLUMN last_error TEXT NOT NULL DEFAULT '';
ALTER TABLE hooks ADD COLUMN failing BOOLEAN NOT NULL DEFAULT false;

CREATE TABLE hook_deliveries (
    hook             TEXT COLLATE "C" NOT NULL,
    event_id         BIGINT NOT NULL,
    secret           TEXT COLLATE "C" NOT NULL DEFAULT '',
    payload          BYTEA,
    event_at         TIMESTAMPTZ NOT NULL,
    state            TEXT NOT NULL,             -- pending, done, failed, dropped
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMPTZ NOT NULL,
    last_error       TEXT NOT NULL DEFAULT '',
    lease_owner      TEXT NOT NULL DEFAULT '',
    lease_expires_at TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (hook, event_id)
);
CREATE INDEX hook_deliveries_pending ON hook_deliveries (hook, secret, event_id) WHERE state = 'pending';
CREATE INDEX hook_deliveries_due ON hook_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX hook_deliveries_ended ON hook_deliveries (updated_at) WHERE state <> 'pending';
CREATE INDEX outbox_secret_undelivered ON outbox (secret, id) WHERE delivered_at IS NULL;
