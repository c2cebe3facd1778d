-- 0003_membership_periods: which part of a group's history each member, and
-- each former member, may read.

-- One row per membership period of a user in a group, as the MySQL projector
-- derives it from GroupCreated, MemberAdded, MemberJoined, MemberLeft and
-- MemberKicked. Bounds are seqs of the group's conversation: the period
-- covers the messages with from_seq < seq <= to_seq. from_seq is the
-- conversation's last seq when the membership began (0 when the group's
-- history was visible to new members then), to_seq its last seq when the
-- membership ended, NULL while it lasts. A member removed and added back
-- with no message in between continues the same period.
CREATE TABLE IF NOT EXISTS group_member_periods (
	group_id VARBINARY(64)   NOT NULL,
	user_id  VARBINARY(64)   NOT NULL,
	from_seq BIGINT UNSIGNED NOT NULL,
	to_seq   BIGINT UNSIGNED NULL,
	PRIMARY KEY (group_id, user_id, from_seq),
	KEY group_member_periods_by_user (user_id, group_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- The group setting of GroupHistoryVisibilityChanged: members who join while
-- it is set read the history from the first message.
ALTER TABLE chat_groups ADD COLUMN history_visible BOOLEAN NOT NULL DEFAULT FALSE;

-- Members of groups projected before this migration keep reading the whole
-- history, as they did; a rebuild (mpimctl replay mysql) derives the exact
-- periods from the log.
INSERT IGNORE INTO group_member_periods (group_id, user_id, from_seq, to_seq)
	SELECT group_id, user_id, 0, NULL FROM group_members;
