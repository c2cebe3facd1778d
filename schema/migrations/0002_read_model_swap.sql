-- 0002_read_model_swap: what the MySQL projector (projectors/mysql) needs
-- beyond 0001 to rebuild its read model beside the live one and swap it in
-- atomically, to check event order per row, and to read the archive back.

-- The MySQL read model's own checkpoints, one row per partition. They are
-- kept apart from projector_checkpoints so that a rebuilt model and its
-- checkpoints are swapped in together by one RENAME TABLE: the checkpoint
-- always describes the model tables it sits beside. (pos_ms, pos_seq) is the
-- stream entry id of the last entry applied, compared as numbers; (0, 0) is
-- before every entry. fencing_token is as in projector_checkpoints.
CREATE TABLE IF NOT EXISTS read_model_checkpoints (
	partition_no  INT UNSIGNED    NOT NULL,
	pos_ms        BIGINT UNSIGNED NOT NULL DEFAULT 0,
	pos_seq       BIGINT UNSIGNED NOT NULL DEFAULT 0,
	fencing_token BIGINT UNSIGNED NOT NULL DEFAULT 0,
	updated_at    DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
	PRIMARY KEY (partition_no)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- One row, id 1. While paused_until is in the future (UTC) the live MySQL
-- projector neither claims nor applies: a replay is swapping a rebuilt model
-- in. Every live batch reads the row under a shared lock first, so setting it
-- waits for the batches in flight. It is a lease: a replayer that dies
-- mid-swap pauses the projector for at most that long.
CREATE TABLE IF NOT EXISTS read_model_control (
	id           TINYINT UNSIGNED NOT NULL,
	paused_until DATETIME(3)      NULL,
	paused_by    VARCHAR(255)     NOT NULL DEFAULT '',
	PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

INSERT IGNORE INTO read_model_control (id) VALUES (1);

-- ADD COLUMN without IF NOT EXISTS (MariaDB-only syntax): the runner treats
-- "duplicate column" as already applied when a half-applied file is re-run.

-- The conversation aggregate's version of the last event applied to the
-- conversation (MessageSent, MessageRecalled, MessageEdited), like the
-- version columns of 0001: a skipped or doubled event shows as a gap.
ALTER TABLE conversations ADD COLUMN version BIGINT UNSIGNED NOT NULL DEFAULT 0;

-- The conversation seq of an archived MessageSent (0 for other events). Like
-- version, the append script assigns it outside the stored envelope bytes, so
-- the archive keeps it beside them to give readers the event as the stream
-- gave it.
ALTER TABLE event_archive ADD COLUMN seq BIGINT UNSIGNED NOT NULL DEFAULT 0 AFTER `version`;
