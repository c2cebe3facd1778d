-- 0004_push_settings: what a push notifier needs, derived from the log by the
-- MySQL projector like the rest of the read model.

-- The device's push token (PushTokenRegistered), cleared by PushTokenRemoved
-- and by DeviceLoggedOut; a device that logs in again while logged in keeps
-- it. push_platform is '' without a token, else apns, fcm, webpush or custom.
-- One statement, so that MySQL adds the three columns or none.
ALTER TABLE user_devices
	ADD COLUMN push_platform VARCHAR(16)     NOT NULL DEFAULT '',
	ADD COLUMN push_token    VARBINARY(4096) NOT NULL DEFAULT '',
	ADD COLUMN push_app_id   VARBINARY(128)  NOT NULL DEFAULT '';

-- A user's do-not-disturb of a conversation (ConversationMuted): push
-- notifications of the conversation stay off until muted_until, or until
-- ConversationUnmuted deletes the row when muted_until is NULL (forever). A
-- row whose muted_until has passed is a mute that ended; readers compare it
-- with their clock. Written only from the user's partition (reader events),
-- so the row is the last mute in log order.
CREATE TABLE IF NOT EXISTS conversation_mutes (
	user_id         VARBINARY(64) NOT NULL,
	conversation_id VARBINARY(64) NOT NULL,
	muted_until     DATETIME(3)   NULL,
	muted_at        DATETIME(3)   NOT NULL,
	PRIMARY KEY (user_id, conversation_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
