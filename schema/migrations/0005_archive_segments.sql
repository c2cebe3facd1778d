-- 0005_archive_segments: the archiver writes one row per batch instead of one
-- per event.

-- The event archive in segments. Each row holds a run of consecutive entries
-- of one partition, as one archiver transaction wrote them: first_* and
-- last_* are the stream entry ids of its first and last entry (compared as
-- numbers), events their count, body the entries (layout in
-- projectors/mysql/segment.go: a format byte 1, then per entry the entry id,
-- version, seq and the envelope bytes exactly as the stream stores them,
-- each length or number a uvarint) and checksum the CRC-32C of body. Segments
-- of a partition never overlap, so ordering by the last entry id orders
-- them. event_archive (0001) keeps the rows written before this migration and
-- the entries re-applied from quarantine; a reader merges both by position.
CREATE TABLE IF NOT EXISTS event_archive_segments (
	partition_no INT UNSIGNED    NOT NULL,
	last_ms      BIGINT UNSIGNED NOT NULL,
	last_seq     BIGINT UNSIGNED NOT NULL,
	first_ms     BIGINT UNSIGNED NOT NULL,
	first_seq    BIGINT UNSIGNED NOT NULL,
	events       INT UNSIGNED    NOT NULL,
	checksum     INT UNSIGNED    NOT NULL,
	body         MEDIUMBLOB      NOT NULL,
	PRIMARY KEY (partition_no, last_ms, last_seq)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
