//! The database schema and its versioned migrations, applied at start-up by every replica.
//!
//! `aegis_schema_migrations` records each applied version. All replicas may start at once, so
//! [`migrate`] runs in one transaction that first takes a transaction-level advisory lock:
//! the first replica applies the missing migrations while the others wait on the lock, then
//! find nothing left to do. The lock ends with the transaction, also when the process dies.
//! PostgreSQL's DDL is transactional, so a failed migration leaves the database at the
//! previous version. A released entry of [`MIGRATIONS`] is never edited: a schema change is a
//! new entry.

use tokio_postgres::Client;

use crate::error::StoreOpenError;

/// The advisory lock key that serializes migrations (the ASCII bytes of `aegis_mg`). Advisory
/// locks are per database, so stores on other databases of the server do not contend.
const MIGRATION_LOCK: i64 = 0x6165_6769_735f_6d67;

/// Resources are JSON documents plus the columns that queries filter or sort on, which every
/// write sets together with the document.
///
/// Documents use the `json` type, not `jsonb`: `json` keeps the text as written, and key order
/// is part of what Aegis returns. A dict task message is sent to the model as Python's
/// `json.dumps` text in the order the client wrote its keys, and team components come back as
/// they were posted; `jsonb` would sort the keys.
const V1_INITIAL: &str = "
CREATE TABLE tasks (
    id uuid PRIMARY KEY,
    created_at timestamptz NOT NULL,
    document json NOT NULL
);
CREATE INDEX tasks_by_created ON tasks (created_at, id);

CREATE TABLE teams (
    id uuid PRIMARY KEY,
    created_at timestamptz NOT NULL,
    document json NOT NULL
);
CREATE INDEX teams_by_created ON teams (created_at, id);

CREATE TABLE sessions (
    id uuid PRIMARY KEY,
    created_at timestamptz NOT NULL,
    document json NOT NULL
);
CREATE INDEX sessions_by_created ON sessions (created_at, id);

-- document is the Run without its messages; team_component and team_metadata are the
-- snapshots taken when the run was accepted. The lease columns are NULL unless the run is
-- active, and cancel_reason is set while an active run has a cancel request. session_limit is
-- the most active runs of the session (from the team_metadata snapshot), NULL for no limit.
-- last_event_seq is the sequence number of the run's newest event: bumping it locks the row,
-- which serializes every change of one run.
CREATE TABLE runs (
    id uuid PRIMARY KEY,
    session_id uuid NOT NULL,
    status text NOT NULL,
    attempt integer NOT NULL,
    created_at timestamptz NOT NULL,
    lease_owner text,
    lease_expires_at timestamptz,
    cancel_reason text,
    session_limit integer,
    stub_error_step bigint,
    last_event_seq bigint NOT NULL DEFAULT 0,
    document json NOT NULL,
    team_component json NOT NULL,
    team_metadata json NOT NULL
);
CREATE INDEX runs_by_created ON runs (created_at, id);
CREATE INDEX runs_by_session ON runs (session_id, created_at, id);
CREATE INDEX runs_queued ON runs (created_at, id) WHERE status = 'created';
CREATE INDEX runs_active_by_session ON runs (session_id) WHERE status = 'active';
CREATE INDEX runs_active_by_expiry ON runs (lease_expires_at) WHERE status = 'active';
CREATE INDEX runs_cancel_requests ON runs (lease_owner) WHERE status = 'active' AND cancel_reason IS NOT NULL;

-- Messages of each attempt; id orders them, since appends to one run are serialized by the
-- run's row lock. A run read back shows the messages of its current attempt only.
CREATE TABLE run_messages (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id uuid NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    attempt integer NOT NULL,
    document json NOT NULL
);
CREATE INDEX run_messages_by_run ON run_messages (run_id, attempt, id);

-- seq counts from 1 over the run's whole life; rows outlive abandoned attempts, so a stream
-- resumed from an event id misses and repeats nothing, whichever replica serves it.
CREATE TABLE run_events (
    run_id uuid NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq bigint NOT NULL,
    document json NOT NULL,
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE session_counters (
    session_id uuid NOT NULL,
    name text NOT NULL,
    value bigint NOT NULL,
    PRIMARY KEY (session_id, name)
);

-- The team state the last complete run of a continue_conversation session left.
CREATE TABLE session_states (
    session_id uuid PRIMARY KEY,
    document json NOT NULL,
    updated_at timestamptz NOT NULL
);

CREATE TABLE idempotency_keys (
    scope text NOT NULL,
    key text NOT NULL,
    request text NOT NULL,
    resource_id uuid NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (scope, key)
);

-- Results of finished items of batch runs; they outlive abandoned attempts.
CREATE TABLE run_batch_items (
    run_id uuid NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    idx bigint NOT NULL,
    document json NOT NULL,
    PRIMARY KEY (run_id, idx)
);
";

/// Filtered, paginated listings and retention: the fields listings filter on, copied out of
/// the JSON documents, and the indexes that serve each filter in `(created_at, id)` order.
///
/// `archived`, `created_by_user_id`, `task_id` and `team_id` are stored generated columns,
/// so PostgreSQL fills them for existing rows when the column is added and keeps them equal
/// to the document on every write. `finished_at` cannot be one, because casting text to
/// `timestamptz` depends on the session's settings and is not immutable: the run writes set
/// it, and this migration fills it from the documents.
const V2_LISTINGS: &str = "
ALTER TABLE tasks
    ADD COLUMN archived boolean GENERATED ALWAYS AS (COALESCE((document ->> 'archived')::boolean, false)) STORED,
    ADD COLUMN created_by_user_id text GENERATED ALWAYS AS (document ->> 'created_by_user_id') STORED;
CREATE INDEX tasks_by_user ON tasks (created_by_user_id, created_at, id);

ALTER TABLE teams
    ADD COLUMN archived boolean GENERATED ALWAYS AS (COALESCE((document ->> 'archived')::boolean, false)) STORED,
    ADD COLUMN created_by_user_id text GENERATED ALWAYS AS (document ->> 'created_by_user_id') STORED;
CREATE INDEX teams_by_user ON teams (created_by_user_id, created_at, id);

ALTER TABLE sessions
    ADD COLUMN archived boolean GENERATED ALWAYS AS (COALESCE((document ->> 'archived')::boolean, false)) STORED,
    ADD COLUMN created_by_user_id text GENERATED ALWAYS AS (document ->> 'created_by_user_id') STORED,
    ADD COLUMN task_id uuid GENERATED ALWAYS AS ((document ->> 'task_id')::uuid) STORED,
    ADD COLUMN team_id uuid GENERATED ALWAYS AS ((document ->> 'team_id')::uuid) STORED;
CREATE INDEX sessions_by_user ON sessions (created_by_user_id, created_at, id);
CREATE INDEX sessions_by_task ON sessions (task_id, created_at, id);
CREATE INDEX sessions_by_team ON sessions (team_id, created_at, id);

-- finished_at is set once the run is terminal; retention deletes by it.
ALTER TABLE runs
    ADD COLUMN archived boolean GENERATED ALWAYS AS (COALESCE((document ->> 'archived')::boolean, false)) STORED,
    ADD COLUMN created_by_user_id text GENERATED ALWAYS AS (document ->> 'created_by_user_id') STORED,
    ADD COLUMN task_id uuid GENERATED ALWAYS AS ((document ->> 'task_id')::uuid) STORED,
    ADD COLUMN finished_at timestamptz;
UPDATE runs SET finished_at = (document ->> 'finished_at')::timestamptz WHERE document ->> 'finished_at' IS NOT NULL;
CREATE INDEX runs_by_task ON runs (task_id, created_at, id);
CREATE INDEX runs_by_user ON runs (created_by_user_id, created_at, id);
CREATE INDEX runs_by_finished ON runs (finished_at) WHERE finished_at IS NOT NULL;

-- Deleting a row deletes the idempotency keys that created it.
CREATE INDEX idempotency_keys_by_resource ON idempotency_keys (resource_id);
";

/// Run time estimates: each run's team (the team of its session when the run was accepted,
/// filled from the sessions for existing rows) and the index that reads a team's most recently
/// finished runs. Queue positions use `runs_queued`.
const V3_ESTIMATES: &str = "
ALTER TABLE runs ADD COLUMN team_id uuid;
UPDATE runs SET team_id = sessions.team_id FROM sessions WHERE sessions.id = runs.session_id;
CREATE INDEX runs_by_team_finished ON runs (team_id, finished_at) WHERE finished_at IS NOT NULL;
";

/// The migrations in order: entry `i` moves a database from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[V1_INITIAL, V2_LISTINGS, V3_ESTIMATES];

/// The schema version this version of the crate migrates databases to.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// Applies the migrations the database lacks, under the migration lock, and returns the
/// version it had before.
pub(crate) async fn migrate(client: &mut Client, url: &str) -> Result<i32, StoreOpenError> {
    let failed = |version: i32| {
        move |error: tokio_postgres::Error| StoreOpenError::Migrate {
            url: url.to_owned(),
            version,
            source: Box::new(error),
        }
    };

    let tx = client.transaction().await.map_err(failed(1))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await.map_err(failed(1))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS aegis_schema_migrations (
             version integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(failed(1))?;
    let row =
        tx.query_one("SELECT COALESCE(MAX(version), 0) FROM aegis_schema_migrations", &[]).await.map_err(failed(1))?;
    let found: i32 = row.get(0);

    if found > SCHEMA_VERSION {
        return Err(StoreOpenError::NewerSchema { url: url.to_owned(), found, supported: SCHEMA_VERSION });
    }

    for (index, sql) in MIGRATIONS.iter().enumerate().skip(usize::try_from(found).unwrap_or_default()) {
        // The list has a handful of entries, so the index fits in an i32.
        let version = index as i32 + 1;
        tx.batch_execute(sql).await.map_err(failed(version))?;
        tx.execute("INSERT INTO aegis_schema_migrations (version) VALUES ($1)", &[&version])
            .await
            .map_err(failed(version))?;
    }

    tx.commit().await.map_err(failed(SCHEMA_VERSION))?;
    if found < SCHEMA_VERSION {
        tracing::info!(url, from = found, to = SCHEMA_VERSION, "migrated postgres schema");
    }
    Ok(found)
}
