-- Several audit chains instead of one (issue 12): every record names its
-- chain, numbered within it, and every chain has its own head row, so
-- writers on different chains never wait for each other's commits. The
-- single chain of before becomes chain 0 (the legacy chain), chain 1
-- holds the anchors, writers take chains 2, 3, … (package audit).
ALTER TABLE audit ADD COLUMN chain BIGINT NOT NULL DEFAULT 0;
ALTER TABLE audit ALTER COLUMN chain DROP DEFAULT;
ALTER TABLE audit DROP CONSTRAINT audit_pkey;
ALTER TABLE audit ADD PRIMARY KEY (chain, seq);
DROP INDEX audit_target;
CREATE INDEX audit_target ON audit (target, time);

CREATE TABLE audit_heads (
    chain BIGINT PRIMARY KEY,
    seq   BIGINT NOT NULL,
    hash  BYTEA
);
INSERT INTO audit_heads (chain, seq, hash) SELECT 0, seq, hash FROM audit_head WHERE id = 1;
INSERT INTO audit_heads (chain, seq, hash) VALUES (0, 0, NULL) ON CONFLICT DO NOTHING;
INSERT INTO audit_heads (chain, seq, hash) VALUES (1, 0, NULL);
DROP TABLE audit_head;
-- New writer chains take their number from here, so two transactions
-- adding a chain at once never pick the same one (and wait on its key).
CREATE SEQUENCE audit_chain_ids START 2;
