-- The identity of the account a rotation is bound to (JSON, see
-- rotators.Target), fixed by `rotary rotation set`. NULL: settings saved
-- before rotations were bound; such a rotation refuses to run until its
-- settings are saved again.
ALTER TABLE rotations ADD COLUMN target BLOB;
