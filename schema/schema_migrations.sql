-- The migration runner's own bookkeeping, created before any migration runs:
-- one row per applied migration file. checksum is the hex SHA-256 of the file.
CREATE TABLE IF NOT EXISTS schema_migrations (
	version    BIGINT UNSIGNED NOT NULL,
	name       VARCHAR(255)    NOT NULL,
	applied_at DATETIME(3)     NOT NULL,
	checksum   CHAR(64)        NOT NULL,
	PRIMARY KEY (version)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
