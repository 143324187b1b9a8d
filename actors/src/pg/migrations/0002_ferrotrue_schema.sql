-- ferrotrue migration 0002: ferrotrue's own schema, next to GoTrue's.
--
-- What GoTrue's tables have no column for (attempt counters, MACs of one-time codes, ...) lives
-- in `{fx}` (`<namespace>_ferrotrue`), never in GoTrue's schema: a database GoTrue migrated is
-- attached without altering `{ns}`, and dropping `{fx}` leaves GoTrue's schema as GoTrue wants it.
-- `{fx}.migrations` records which of ferrotrue's own migrations ran (GoTrue's versions stay in
-- `{ns}.schema_migrations`).

CREATE SCHEMA IF NOT EXISTS {fx};

CREATE TABLE IF NOT EXISTS {fx}.migrations (
    version text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT migrations_pkey PRIMARY KEY (version)
);
