-- The last committed change of each secret name: the transaction that
-- made it (pg_current_xact_id()). Change notices go out after commit
-- (notify.go); a daemon that dies between a commit and its notice leaves
-- its change here, where the other daemons' listeners find it by the
-- transaction ids that committed since their previous check.
CREATE TABLE secret_changes (
    name TEXT COLLATE "C" PRIMARY KEY,
    xid  XID8 NOT NULL
);
CREATE INDEX secret_changes_xid ON secret_changes (xid);
