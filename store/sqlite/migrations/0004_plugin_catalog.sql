-- The plugin catalog: the registration (environment, update time) and what
-- the plugin said about itself when it last started. JSON lists are TEXT;
-- NULL is an empty list.
ALTER TABLE plugins ADD COLUMN env TEXT;
ALTER TABLE plugins ADD COLUMN updated_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE plugins ADD COLUMN version TEXT NOT NULL DEFAULT '';
ALTER TABLE plugins ADD COLUMN secret_types TEXT;
ALTER TABLE plugins ADD COLUMN kinds TEXT;
ALTER TABLE plugins ADD COLUMN identity_fields TEXT;
ALTER TABLE plugins ADD COLUMN last_start_at INTEGER;
ALTER TABLE plugins ADD COLUMN status TEXT NOT NULL DEFAULT '';
ALTER TABLE plugins ADD COLUMN last_error TEXT NOT NULL DEFAULT '';
UPDATE plugins SET updated_at = created_at;
