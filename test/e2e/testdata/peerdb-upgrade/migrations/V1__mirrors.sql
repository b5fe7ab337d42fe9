CREATE TABLE mirrors (name text PRIMARY KEY, created timestamptz NOT NULL DEFAULT now());
