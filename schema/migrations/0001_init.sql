-- 0001_init: the read models of DESIGN section 4, the event archive, projector
-- checkpoints and sessions.
--
-- Conventions (see package schema for the file rules):
--   * ids are the domain's ASCII strings stored as VARBINARY(64): "u/<ulid>"
--     users, "g/<ulid>" groups, "d/<ulid>.<ulid>" or "c/<ulid>" conversations
--     (55 bytes at most); device and client message ids are at most 64 bytes.
--   * sequences, versions and positions are BIGINT UNSIGNED, never INT.
--   * times are DATETIME(3) in UTC. Read-model times come from the events
--     (occurred_at, sent_at), never from NOW(), so a rebuild yields the same rows.
--   * the MySQL projector applies a batch and advances its checkpoint in one
--     transaction (compare-and-set on position and fencing token), which makes
--     every effect exactly-once. The `version` columns (the aggregate version of
--     the last event applied to the row) let an UPDATE ... WHERE version < ?
--     stay idempotent on top of that, e.g. during a replay.

-- One row per projector and partition: how far it has applied the log.
-- position is the stream entry id "<ms>-<seq>" (two 20-digit numbers and a
-- dash: 41 characters at most); "0" or "" means nothing applied yet.
-- fencing_token is the owner's ZooKeeper ownership node czxid: a writer whose
-- token is lower than the stored one has lost ownership and must stop.
CREATE TABLE IF NOT EXISTS projector_checkpoints (
	projector     VARCHAR(64)     NOT NULL,
	partition_no  INT UNSIGNED    NOT NULL,
	position      VARCHAR(41)     NOT NULL DEFAULT '0',
	fencing_token BIGINT UNSIGNED NOT NULL DEFAULT 0,
	updated_at    DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
	PRIMARY KEY (projector, partition_no)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Every event, copied from Redis by the archiver so the log can be trimmed.
-- The primary key is the read order of a partition: (pos_ms, pos_seq) is the
-- stream entry id, compared as numbers. payload is the encoded mpim.v1.Event
-- envelope exactly as stored in the stream entry.
CREATE TABLE IF NOT EXISTS event_archive (
	partition_no INT UNSIGNED    NOT NULL,
	pos_ms       BIGINT UNSIGNED NOT NULL,
	pos_seq      BIGINT UNSIGNED NOT NULL,
	event_id     BINARY(16)      NOT NULL,
	aggregate    VARBINARY(255)  NOT NULL,
	version      BIGINT UNSIGNED NOT NULL,
	event_type   VARBINARY(64)   NOT NULL,
	occurred_at  DATETIME(3)     NOT NULL,
	payload      MEDIUMBLOB      NOT NULL,
	PRIMARY KEY (partition_no, pos_ms, pos_seq),
	UNIQUE KEY event_archive_event_id (event_id),
	UNIQUE KEY event_archive_aggregate_version (aggregate, version)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Events a projector could not decode or apply, set aside so the partition
-- keeps moving; raw is the stream entry's encoded event.
CREATE TABLE IF NOT EXISTS quarantine (
	projector      VARCHAR(64)     NOT NULL,
	partition_no   INT UNSIGNED    NOT NULL,
	pos_ms         BIGINT UNSIGNED NOT NULL,
	pos_seq        BIGINT UNSIGNED NOT NULL,
	reason         VARCHAR(1024)   NOT NULL,
	raw            MEDIUMBLOB      NOT NULL,
	quarantined_at DATETIME(3)     NOT NULL,
	PRIMARY KEY (projector, partition_no, pos_ms, pos_seq)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Accounts. username is the normalised name (ASCII, unique).
CREATE TABLE IF NOT EXISTS users (
	user_id       VARBINARY(64)   NOT NULL,
	username      VARBINARY(128)  NOT NULL,
	display_name  VARCHAR(255)    NOT NULL DEFAULT '',
	avatar_url    VARCHAR(2048)   NOT NULL DEFAULT '',
	password_hash VARBINARY(512)  NOT NULL,
	created_at    DATETIME(3)     NOT NULL,
	updated_at    DATETIME(3)     NOT NULL,
	version       BIGINT UNSIGNED NOT NULL,
	PRIMARY KEY (user_id),
	UNIQUE KEY users_username (username)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Devices that logged in; logged_out_at is NULL while the session is open.
CREATE TABLE IF NOT EXISTS user_devices (
	user_id       VARBINARY(64) NOT NULL,
	device_id     VARBINARY(64) NOT NULL,
	platform      VARCHAR(64)   NOT NULL DEFAULT '',
	last_login_at DATETIME(3)   NOT NULL,
	logged_out_at DATETIME(3)   NULL,
	PRIMARY KEY (user_id, device_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- The latest friend request from one user to another; a new request after a
-- decline reuses the row. version is the relationship aggregate's.
CREATE TABLE IF NOT EXISTS friend_requests (
	from_user  VARBINARY(64)                          NOT NULL,
	to_user    VARBINARY(64)                          NOT NULL,
	message    TEXT                                   NOT NULL,
	status     ENUM('pending', 'accepted', 'declined') NOT NULL,
	created_at DATETIME(3)                            NOT NULL,
	updated_at DATETIME(3)                            NOT NULL,
	version    BIGINT UNSIGNED                        NOT NULL,
	PRIMARY KEY (from_user, to_user),
	KEY friend_requests_incoming (to_user, status)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Friendships, one row per direction: (a, b) and (b, a).
CREATE TABLE IF NOT EXISTS friendships (
	user_id   VARBINARY(64) NOT NULL,
	friend_id VARBINARY(64) NOT NULL,
	since     DATETIME(3)   NOT NULL,
	PRIMARY KEY (user_id, friend_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- blocker does not accept messages from blocked.
CREATE TABLE IF NOT EXISTS blocks (
	blocker    VARBINARY(64) NOT NULL,
	blocked    VARBINARY(64) NOT NULL,
	blocked_at DATETIME(3)   NOT NULL,
	PRIMARY KEY (blocker, blocked)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Groups. dissolved_at is NULL while the group exists; member_count is kept
-- by the projector (the size that switches a group to read fan-out).
CREATE TABLE IF NOT EXISTS chat_groups (
	group_id     VARBINARY(64)   NOT NULL,
	name         VARCHAR(255)    NOT NULL,
	owner_id     VARBINARY(64)   NOT NULL,
	is_open      BOOLEAN         NOT NULL DEFAULT FALSE,
	member_count INT UNSIGNED    NOT NULL DEFAULT 0,
	created_at   DATETIME(3)     NOT NULL,
	updated_at   DATETIME(3)     NOT NULL,
	dissolved_at DATETIME(3)     NULL,
	version      BIGINT UNSIGNED NOT NULL,
	PRIMARY KEY (group_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Current members; a member who leaves or is kicked loses the row. muted is
-- true from MemberMuted to MemberUnmuted; muted_until is NULL for "until
-- unmuted". The second key lists a user's groups.
CREATE TABLE IF NOT EXISTS group_members (
	group_id    VARBINARY(64)                    NOT NULL,
	user_id     VARBINARY(64)                    NOT NULL,
	role        ENUM('member', 'admin', 'owner') NOT NULL,
	muted       BOOLEAN                          NOT NULL DEFAULT FALSE,
	muted_until DATETIME(3)                      NULL,
	joined_at   DATETIME(3)                      NOT NULL,
	PRIMARY KEY (group_id, user_id),
	KEY group_members_by_user (user_id, group_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Message history, one row per MessageSent, paged by seq in either direction.
-- attachment is the typed payload as JSON (NULL for text). A recall sets
-- recalled_at (the projector may blank body and attachment); an edit replaces
-- body and sets edited_at. version is the conversation aggregate's version of
-- the last event applied to the row.
CREATE TABLE IF NOT EXISTS messages (
	conversation_id VARBINARY(64)                            NOT NULL,
	seq             BIGINT UNSIGNED                          NOT NULL,
	event_id        BINARY(16)                               NOT NULL,
	sender_id       VARBINARY(64)                            NOT NULL,
	device_id       VARBINARY(64)                            NOT NULL DEFAULT '',
	client_msg_id   VARBINARY(64)                            NOT NULL DEFAULT '',
	kind            ENUM('text', 'image', 'file', 'custom') NOT NULL,
	body            MEDIUMTEXT                               NOT NULL,
	attachment      JSON                                     NULL,
	sent_at         DATETIME(3)                              NOT NULL,
	edited_at       DATETIME(3)                              NULL,
	recalled_at     DATETIME(3)                              NULL,
	version         BIGINT UNSIGNED                          NOT NULL,
	PRIMARY KEY (conversation_id, seq)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Messages a user deleted for themself only.
CREATE TABLE IF NOT EXISTS message_deletions (
	user_id         VARBINARY(64)   NOT NULL,
	conversation_id VARBINARY(64)   NOT NULL,
	seq             BIGINT UNSIGNED NOT NULL,
	deleted_at      DATETIME(3)     NOT NULL,
	PRIMARY KEY (user_id, conversation_id, seq)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- The last message of each conversation, written once per MessageSent
-- whatever the number of members. A projector serving a large group can read
-- last_* from here instead of updating every member's user_conversations row.
CREATE TABLE IF NOT EXISTS conversations (
	conversation_id VARBINARY(64)   NOT NULL,
	last_seq        BIGINT UNSIGNED NOT NULL DEFAULT 0,
	last_message_at DATETIME(3)     NULL,
	last_sender     VARBINARY(64)   NOT NULL DEFAULT '',
	last_preview    VARCHAR(255)    NOT NULL DEFAULT '',
	PRIMARY KEY (conversation_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- A user's conversation list. The row is written from two partitions (the
-- conversation's messages and the user's read markers), so the projector
-- only ever raises last_seq and read_seq (GREATEST) and recomputes
-- unread_count = last_seq - read_seq, or 0 when read_seq >= last_seq: order
-- between partitions then does not matter and unread_count is never negative.
-- The second key lists conversations by recency.
CREATE TABLE IF NOT EXISTS user_conversations (
	user_id         VARBINARY(64)   NOT NULL,
	conversation_id VARBINARY(64)   NOT NULL,
	last_seq        BIGINT UNSIGNED NOT NULL DEFAULT 0,
	last_message_at DATETIME(3)     NULL,
	last_sender     VARBINARY(64)   NOT NULL DEFAULT '',
	last_preview    VARCHAR(255)    NOT NULL DEFAULT '',
	read_seq        BIGINT UNSIGNED NOT NULL DEFAULT 0,
	unread_count    BIGINT UNSIGNED NOT NULL DEFAULT 0,
	updated_at      DATETIME(3)     NOT NULL,
	PRIMARY KEY (user_id, conversation_id),
	KEY user_conversations_recent (user_id, last_message_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Sessions, written by the gateway (not a projector): token_hash is the
-- SHA-256 of the bearer token, which is never stored.
CREATE TABLE IF NOT EXISTS auth_tokens (
	token_hash BINARY(32)    NOT NULL,
	user_id    VARBINARY(64) NOT NULL,
	device_id  VARBINARY(64) NOT NULL,
	created_at DATETIME(3)   NOT NULL,
	expires_at DATETIME(3)   NOT NULL,
	revoked_at DATETIME(3)   NULL,
	PRIMARY KEY (token_hash),
	KEY auth_tokens_device (user_id, device_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
