import Foundation
import SQLKit

/// The schema and its versioned migrations, applied once each, in order, on either database.
extension RegistryDatabase {
    /// The tables as migration 1 creates them. (SQLite runs with WAL and synchronous=NORMAL:
    /// consistent across crashes, a power loss may drop the last commits, never corrupt.)
    package static let schema = [
        """
        CREATE TABLE IF NOT EXISTS accounts (
          id TEXT PRIMARY KEY, username TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, name TEXT,
          password_hash TEXT, is_admin BOOLEAN NOT NULL DEFAULT FALSE, created_at TEXT NOT NULL)
        """,
        """
        CREATE TABLE IF NOT EXISTS memberships (
          organization_id TEXT NOT NULL, user_id TEXT NOT NULL, role TEXT NOT NULL,
          PRIMARY KEY (organization_id, user_id))
        """,
        """
        CREATE TABLE IF NOT EXISTS tokens (
          id TEXT PRIMARY KEY, user_id TEXT NOT NULL, label TEXT NOT NULL, token_hash TEXT NOT NULL UNIQUE,
          created_at TEXT NOT NULL, last_used_at TEXT, revoked_at TEXT)
        """,
        """
        CREATE TABLE IF NOT EXISTS models (
          id TEXT PRIMARY KEY, owner_id TEXT NOT NULL, name TEXT NOT NULL, visibility TEXT NOT NULL,
          description TEXT, license TEXT, readme TEXT, created_at TEXT NOT NULL, UNIQUE (owner_id, name))
        """,
        """
        CREATE TABLE IF NOT EXISTS versions (
          model_id TEXT NOT NULL, id TEXT NOT NULL, manifest_digest TEXT NOT NULL, openapi_schema TEXT NOT NULL,
          created_at TEXT NOT NULL, PRIMARY KEY (model_id, id))
        """,
        """
        CREATE TABLE IF NOT EXISTS manifests (
          repository TEXT NOT NULL, digest TEXT NOT NULL, media_type TEXT NOT NULL, size BIGINT NOT NULL,
          created_at TEXT NOT NULL, PRIMARY KEY (repository, digest))
        """,
        """
        CREATE TABLE IF NOT EXISTS tags (
          repository TEXT NOT NULL, tag TEXT NOT NULL, manifest_digest TEXT NOT NULL, updated_at TEXT NOT NULL,
          PRIMARY KEY (repository, tag))
        """,
        "CREATE TABLE IF NOT EXISTS blobs (digest TEXT PRIMARY KEY, size BIGINT NOT NULL, created_at TEXT NOT NULL)",
        """
        CREATE TABLE IF NOT EXISTS repository_blobs (
          repository TEXT NOT NULL, digest TEXT NOT NULL, PRIMARY KEY (repository, digest))
        """,
        """
        CREATE TABLE IF NOT EXISTS predictions (
          id TEXT PRIMARY KEY, model_id TEXT NOT NULL, model TEXT NOT NULL, version TEXT NOT NULL, creator_id TEXT NOT NULL,
          source TEXT NOT NULL, status TEXT NOT NULL, input TEXT, output TEXT, error TEXT, logs TEXT NOT NULL DEFAULT '',
          metrics TEXT, created_at TEXT NOT NULL, started_at TEXT, completed_at TEXT,
          data_removed BOOLEAN NOT NULL DEFAULT FALSE, shared BOOLEAN NOT NULL DEFAULT FALSE,
          webhook TEXT, webhook_events_filter TEXT, account_id TEXT)
        """,
        "CREATE INDEX IF NOT EXISTS predictions_creator ON predictions (creator_id, created_at)",
        """
        CREATE TABLE IF NOT EXISTS files (
          id TEXT PRIMARY KEY, owner_id TEXT NOT NULL, name TEXT NOT NULL, content_type TEXT NOT NULL, size BIGINT NOT NULL,
          sha256 TEXT NOT NULL, metadata TEXT NOT NULL, created_at TEXT NOT NULL, expires_at TEXT NOT NULL)
        """,
        """
        CREATE TABLE IF NOT EXISTS examples (
          model_id TEXT NOT NULL, prediction_id TEXT NOT NULL, created_at TEXT NOT NULL, PRIMARY KEY (model_id, prediction_id))
        """,
        """
        CREATE TABLE IF NOT EXISTS deployments (
          id TEXT PRIMARY KEY, owner_id TEXT NOT NULL, name TEXT NOT NULL, model_id TEXT NOT NULL, version TEXT NOT NULL,
          hardware TEXT NOT NULL, min_instances INTEGER NOT NULL, max_instances INTEGER NOT NULL, release INTEGER NOT NULL,
          created_by TEXT NOT NULL, created_at TEXT NOT NULL, UNIQUE (owner_id, name))
        """,
        "CREATE TABLE IF NOT EXISTS webhook_secrets (account_id TEXT PRIMARY KEY, secret TEXT NOT NULL)",
        """
        CREATE TABLE IF NOT EXISTS sessions (
          id_hash TEXT PRIMARY KEY, user_id TEXT NOT NULL, acting_id TEXT NOT NULL, created_at TEXT NOT NULL, expires_at TEXT NOT NULL)
        """,
        """
        CREATE TABLE IF NOT EXISTS uploads (
          id TEXT PRIMARY KEY, repository TEXT NOT NULL, user_id TEXT NOT NULL, created_at TEXT NOT NULL)
        """,
    ]

    /// The migrations, in order. Each runs once, in a transaction, and is recorded in
    /// `schema_migrations`; never edit one that has shipped, add the next.
    package static let migrations: [(version: Int, name: String, run: @Sendable (any SQLDatabase, Kind) async throws -> Void)] = [
        (1, "initial schema", { sql, _ in
            for statement in schema { try await sql.raw(SQLQueryString(statement)).run() }
        }),
        (2, "predictions.account_id", { sql, kind in
            // Databases made before migrations existed may have the column already.
            if (try? await sql.raw("SELECT account_id FROM predictions LIMIT 1").all()) == nil {
                try await sql.raw("ALTER TABLE predictions ADD COLUMN account_id TEXT").run()
            }
        }),
        (3, "the prediction queue: claims, leases, attempts, cancel requests", { sql, _ in
            for statement in [
                "ALTER TABLE predictions ADD COLUMN claim_id TEXT",
                "ALTER TABLE predictions ADD COLUMN claimed_by TEXT",
                "ALTER TABLE predictions ADD COLUMN lease_until TEXT",
                "ALTER TABLE predictions ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0",
                "ALTER TABLE predictions ADD COLUMN cancel_requested BOOLEAN NOT NULL DEFAULT FALSE",
                "ALTER TABLE predictions ADD COLUMN check_safety BOOLEAN NOT NULL DEFAULT TRUE",
                "CREATE INDEX IF NOT EXISTS predictions_queue ON predictions (status, claimed_by, created_at)",
                "CREATE INDEX IF NOT EXISTS predictions_claims ON predictions (claim_id)",
            ] { try await sql.raw(SQLQueryString(statement)).run() }
        }),
        (4, "rate-limit counters shared by replicas", { sql, _ in
            try await sql.raw("""
                CREATE TABLE IF NOT EXISTS rate_counters (
                  key TEXT NOT NULL, window_start TEXT NOT NULL, count BIGINT NOT NULL, PRIMARY KEY (key, window_start))
                """).run()
        }),
        (5, "prediction events: the append-only log streams follow", { sql, kind in
            let key = kind == .postgres ? "seq BIGSERIAL PRIMARY KEY" : "seq INTEGER PRIMARY KEY AUTOINCREMENT"
            try await sql.raw("""
                CREATE TABLE IF NOT EXISTS prediction_events (
                  \(unsafeRaw: key), prediction_id TEXT NOT NULL, kind TEXT NOT NULL, data TEXT NOT NULL, created_at TEXT NOT NULL)
                """).run()
            try await sql.raw("CREATE INDEX IF NOT EXISTS prediction_events_by_prediction ON prediction_events (prediction_id, seq)").run()
            try await sql.raw("CREATE INDEX IF NOT EXISTS prediction_events_by_time ON prediction_events (created_at)").run()
        }),
        (6, "web sign-in attempts shared by replicas", { sql, _ in
            try await sql.raw("CREATE TABLE IF NOT EXISTS signin_attempts (key TEXT NOT NULL, kind TEXT NOT NULL, at TEXT NOT NULL)").run()
            try await sql.raw("CREATE INDEX IF NOT EXISTS signin_attempts_by_key ON signin_attempts (key, at)").run()
        }),
        (7, "blobs.touched_at: when a push last named a blob (garbage collection spares recent ones)", { sql, _ in
            try await sql.raw("ALTER TABLE blobs ADD COLUMN touched_at TEXT").run()
            try await sql.raw("UPDATE blobs SET touched_at = created_at").run()
        }),
        (8, "worker tokens (stored hashed) and the hardware a model asks for", { sql, _ in
            try await sql.raw("""
                CREATE TABLE IF NOT EXISTS worker_tokens (
                  id TEXT PRIMARY KEY, name TEXT NOT NULL, token_hash TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL, revoked_at TEXT)
                """).run()
            try await sql.raw("ALTER TABLE models ADD COLUMN hardware TEXT NOT NULL DEFAULT 'cpu'").run()
        }),
        (9, "uploads: one writer at a time (a lease every replica sees)", { sql, _ in
            try await sql.raw("ALTER TABLE uploads ADD COLUMN writer TEXT").run()
            try await sql.raw("ALTER TABLE uploads ADD COLUMN writer_until TEXT").run()
        }),
        (10, "server keys every replica shares (the stream URLs' signing key)", { sql, _ in
            try await sql.raw("CREATE TABLE IF NOT EXISTS server_keys (name TEXT PRIMARY KEY, secret TEXT NOT NULL)").run()
        }),
        (11, "disabled users; a change counter processes without the server's events (lathe admin) bump", { sql, _ in
            try await sql.raw("ALTER TABLE accounts ADD COLUMN disabled_at TEXT").run()
            try await sql.raw("CREATE TABLE IF NOT EXISTS change_counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL)").run()
            try await sql.raw("INSERT INTO change_counters (name, value) VALUES ('accounts', 0)").run()
        }),
        (12, "models: when the readme was last edited on the web or through the API (a push's README.md then leaves it)", { sql, _ in
            try await sql.raw("ALTER TABLE models ADD COLUMN readme_edited_at TEXT").run()
        }),
        (13, "webhook deliveries: rows any replica sends and retries, so a restart or a dead replica loses none", { sql, _ in
            try await sql.raw("""
                CREATE TABLE IF NOT EXISTS webhook_deliveries (
                  id TEXT PRIMARY KEY, prediction_id TEXT NOT NULL, event TEXT NOT NULL, url TEXT NOT NULL,
                  account_id TEXT NOT NULL, body TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL,
                  next_at TEXT NOT NULL, created_at TEXT NOT NULL, claimed_by TEXT, claimed_until TEXT,
                  finished_at TEXT, last_error TEXT)
                """).run()
            try await sql.raw("CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries (next_at) WHERE status = 'pending'").run()
            try await sql.raw("CREATE INDEX IF NOT EXISTS webhook_deliveries_prediction ON webhook_deliveries (prediction_id)").run()
        }),
        (14, "output files by token: garbage collection looks up the files it finds instead of reading every output", { sql, _ in
            try await sql.raw("CREATE TABLE IF NOT EXISTS output_files (token TEXT PRIMARY KEY, prediction_id TEXT NOT NULL)").run()
            try await sql.raw("CREATE INDEX IF NOT EXISTS output_files_prediction ON output_files (prediction_id)").run()
            // The one full read: outputs written before the index.
            for row in try await PredictionStore.outputsNamingFiles(sql) {
                try await PredictionStore.indexOutputFiles(sql, prediction: row.id, output: row.output)
            }
        }),
        (15, "predictions: the request's context (Cog's current_scope().context)", { sql, _ in
            try await sql.raw("ALTER TABLE predictions ADD COLUMN context TEXT").run()
        }),
        (16, "the fleet in the shared store: workers, the instances replicas placed on them, commands for their long polls", { sql, kind in
            try await sql.raw("""
                CREATE TABLE IF NOT EXISTS workers (
                  id TEXT PRIMARY KEY, name TEXT NOT NULL, token_id TEXT NOT NULL, version TEXT NOT NULL, hardware TEXT NOT NULL,
                  capacity INTEGER NOT NULL, cached TEXT NOT NULL, reported TEXT NOT NULL, reported_at TEXT NOT NULL, seen_until TEXT NOT NULL)
                """).run()
            try await sql.raw("""
                CREATE TABLE IF NOT EXISTS worker_instances (
                  id TEXT PRIMARY KEY, worker_id TEXT NOT NULL, replica TEXT NOT NULL, replica_url TEXT NOT NULL,
                  token_id TEXT NOT NULL, model_id TEXT NOT NULL, lease_until TEXT NOT NULL)
                """).run()
            try await sql.raw("CREATE INDEX IF NOT EXISTS worker_instances_by_worker ON worker_instances (worker_id)").run()
            try await sql.raw("CREATE INDEX IF NOT EXISTS worker_instances_by_token ON worker_instances (token_id, model_id)").run()
            let key = kind == .postgres ? "seq BIGSERIAL PRIMARY KEY" : "seq INTEGER PRIMARY KEY AUTOINCREMENT"
            try await sql.raw("""
                CREATE TABLE IF NOT EXISTS worker_commands (\(unsafeRaw: key), worker_id TEXT NOT NULL, command TEXT NOT NULL, created_at TEXT NOT NULL)
                """).run()
            try await sql.raw("CREATE INDEX IF NOT EXISTS worker_commands_by_worker ON worker_commands (worker_id, seq)").run()
        }),
        (17, "workers: the replica an embedded worker runs inside (only it places there)", { sql, _ in
            try await sql.raw("ALTER TABLE workers ADD COLUMN home_replica TEXT").run()
        }),
        (18, "trainings: the configs they run under (versions no listing shows) and what each training makes", { sql, _ in
            try await sql.raw("ALTER TABLE versions ADD COLUMN training_of TEXT").run()
            try await sql.raw("ALTER TABLE predictions ADD COLUMN training TEXT").run()
        }),
    ]

    func migrate() async throws {
        if kind == .sqlite {
            // Connection settings, not schema: applied on every open, outside transactions.
            for pragma in ["PRAGMA journal_mode=WAL", "PRAGMA busy_timeout=5000", "PRAGMA synchronous=NORMAL"] {
                try await sql.raw(SQLQueryString(pragma)).run()
            }
        }
        try await sql.raw("""
            CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)
            """).run()
        struct Row: Decodable { var version: Int }
        let kind = self.kind
        for migration in Self.migrations {
            let applied = try await sql.raw("SELECT version FROM schema_migrations WHERE version = \(bind: migration.version)").all(decoding: Row.self)
            guard applied.isEmpty else { continue }
            try await transaction { session in
                // Replicas starting together: PostgreSQL serializes them on this lock; the loser
                // finds the migration recorded and skips it.
                if kind == .postgres { try await session.raw("SELECT pg_advisory_xact_lock(7210001)").run() }
                let again = try await session.raw("SELECT version FROM schema_migrations WHERE version = \(bind: migration.version)").all(decoding: Row.self)
                guard again.isEmpty else { return }
                try await migration.run(session, kind)
                try await session.raw("""
                    INSERT INTO schema_migrations (version, name, applied_at) VALUES (\(bind: migration.version), \(bind: migration.name), \(bind: Timestamp.now()))
                    """).run()
            }
        }
    }
}
