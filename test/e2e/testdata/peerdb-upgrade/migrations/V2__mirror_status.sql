ALTER TABLE mirrors ADD COLUMN status text NOT NULL DEFAULT 'running';
CREATE INDEX mirrors_status ON mirrors (status);
