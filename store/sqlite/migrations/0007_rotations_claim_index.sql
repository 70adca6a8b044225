-- Claims of due rotations order by (next_due_at, secret): with the index
-- on next_due_at alone, every claim sorted all the rows due at once (a
-- burst of 10,000 due together cost each claim a sort of the backlog).
CREATE INDEX rotations_due_claim ON rotations (next_due_at, secret) WHERE enabled = 1;
DROP INDEX rotations_due;
