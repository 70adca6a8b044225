-- Several audit chains instead of one (issue 12): every record names its
-- chain, numbered within it, and every chain has its own head row. The
-- single chain of before becomes chain 0 (the legacy chain), chain 1
-- holds the anchors, writers take chains 2, 3, … (package audit).
CREATE TABLE audit_chains (
    chain      INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    time       INTEGER NOT NULL,
    token_id   TEXT NOT NULL DEFAULT '',
    action     TEXT NOT NULL DEFAULT '',
    target     TEXT NOT NULL DEFAULT '',
    result     TEXT NOT NULL DEFAULT '',
    request_id TEXT NOT NULL DEFAULT '',
    detail     TEXT NOT NULL DEFAULT '',
    prev_hash  BLOB,
    hash       BLOB,
    PRIMARY KEY (chain, seq)
);
INSERT INTO audit_chains (chain, seq, time, token_id, action, target, result, request_id, detail, prev_hash, hash)
    SELECT 0, seq, time, token_id, action, target, result, request_id, detail, prev_hash, hash FROM audit;
DROP TABLE audit;
ALTER TABLE audit_chains RENAME TO audit;
CREATE INDEX audit_target ON audit (target, time);
CREATE INDEX audit_time ON audit (time);

CREATE TABLE audit_heads (
    chain INTEGER PRIMARY KEY,
    seq   INTEGER NOT NULL,
    hash  BLOB
);
INSERT INTO audit_heads (chain, seq, hash) SELECT 0, seq, hash FROM audit_head WHERE id = 1;
INSERT OR IGNORE INTO audit_heads (chain, seq, hash) VALUES (0, 0, NULL);
INSERT INTO audit_heads (chain, seq, hash) VALUES (1, 0, NULL);
DROP TABLE audit_head;
