-- The same migration, failing halfway: its first statement succeeds, the second fails, so the
-- transaction leaves nothing behind and V2 stays unapplied.
ALTER TABLE mirrors ADD COLUMN status text NOT NULL DEFAULT 'running';
SELECT 1 / 0;
