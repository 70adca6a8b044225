-- The newest audit record's seq and hash, kept apart from the records, so
-- that deleting the last records of the chain is noticed: the chain then
-- ends before the head (audit verify compares the two).
CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash BLOB
);
INSERT INTO audit_head (id, seq, hash)
    SELECT 1, COALESCE(MAX(seq), 0), (SELECT hash FROM audit ORDER BY seq DESC LIMIT 1) FROM audit;
