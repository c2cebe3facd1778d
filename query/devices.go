package query

import (
	"context"
	"database/sql"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/internal/readmodel"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
)

// Devices returns user's logged-in devices, most recent login first, at
// most limit of them, with the platform and app id of their push tokens
// (not the tokens), without their presence (the delivery hub's).
func (s *Service) Devices(ctx context.Context, user domain.UserID, limit int) ([]*mpimv1.DeviceInfo, error) {
	var out []*mpimv1.DeviceInfo
	err := s.query(ctx, "listing devices", func(rows *sql.Rows) error {
		dev := &mpimv1.DeviceInfo{}
		var at sql.NullTime
		push := &mpimv1.DevicePush{}
		if err := rows.Scan(&dev.DeviceId, &dev.Platform, &at, &push.Platform, &push.AppId); err != nil {
			return err
		}
		if at.Valid {
			dev.LoggedInAtMs = at.Time.UnixMilli()
		}
		if push.Platform != "" {
			dev.Push = push
		}
		out = append(out, dev)
		return nil
	}, "SELECT device_id, platform, last_login_at, push_platform, push_app_id FROM "+readmodel.Devices+" WHERE user_id = ? AND logged_out_at IS NULL "+
		"ORDER BY last_login_at DESC, device_id LIMIT ?", string(user), limit)
	return out, err
}
