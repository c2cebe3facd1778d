package main

import (
	"context"
	"fmt"

	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
)

// The chat's session commands: /devices, /logout-device, /logout-others
// and /password.

// cmdDevices lists the user's logged-in devices.
func (c *chat) cmdDevices(ctx context.Context) error {
	r, err := c.call(ctx, &mpimv1.ClientFrame_ListDevices{ListDevices: &mpimv1.ListDevicesRequest{}})
	if err != nil {
		return err
	}
	devs := r.GetListDevices().GetDevices()
	c.printf("-- %d device(s) --", len(devs))
	for _, d := range devs {
		state := "offline"
		switch {
		case d.GetOnline():
			state = "online"
		case d.GetLastSeenMs() > 0:
			state = "last seen " + clock(d.GetLastSeenMs())
		}
		line := fmt.Sprintf("  %s (%s) %s", d.GetDeviceId(), or(d.GetPlatform(), "unknown platform"), state)
		if d.GetLoggedInAtMs() > 0 {
			line += ", logged in " + clock(d.GetLoggedInAtMs())
		}
		if d.GetCurrent() {
			line += " (this device)"
		}
		c.printf("%s", line)
	}
	return nil
}

// cmdLogoutDevice logs out one other device of the user.
func (c *chat) cmdLogoutDevice(ctx context.Context, args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: /logout-device DEVICE (see /devices)")
	}
	if _, err := c.call(ctx, &mpimv1.ClientFrame_LogoutDevice{LogoutDevice: &mpimv1.LogoutDeviceRequest{DeviceId: args[0]}}); err != nil {
		return err
	}
	c.printf("device %s logged out", args[0])
	return nil
}

// cmdLogoutOthers logs out every device of the user but this one.
func (c *chat) cmdLogoutOthers(ctx context.Context) error {
	if _, err := c.call(ctx, &mpimv1.ClientFrame_LogoutOtherDevices{LogoutOtherDevices: &mpimv1.LogoutOtherDevicesRequest{}}); err != nil {
		return err
	}
	c.printf("every other device logged out")
	return nil
}

// cmdPassword asks for the new password: the next input line is taken as
// it (and not sent as a message).
func (c *chat) cmdPassword(args []string) error {
	if len(args) != 0 {
		return fmt.Errorf("usage: /password, then the new password on the next line")
	}
	c.askingPassword = true
	c.printf("new password (the next line; it is not sent as a message):")
	return nil
}

// changePassword changes the password from the one the chat logged in with
// to pw; the user's other devices are logged out.
func (c *chat) changePassword(ctx context.Context, pw string) {
	_, err := c.call(ctx, &mpimv1.ClientFrame_ChangePassword{ChangePassword: &mpimv1.ChangePasswordRequest{OldPassword: c.password, NewPassword: pw}})
	if err != nil {
		c.printf("error: password not changed: %v", err)
		return
	}
	c.password = pw
	c.s.SetPassword(pw)
	c.printf("password changed; your other devices are logged out")
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
