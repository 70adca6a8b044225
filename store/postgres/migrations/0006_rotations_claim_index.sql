-- Claims of due rotations order by (next_due_at, secret): with the index
-- on next_due_at alone, every claim sorted all the rows due at once.
CREATE INDEX rotations_due_claim ON rotations (next_due_at, secret) WHERE enabled;
DROP INDEX rotations_due;
