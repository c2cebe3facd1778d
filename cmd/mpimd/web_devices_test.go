package main

import (
	"context"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/mpim/mpim/client"
	"github.com/mpim/mpim/proto/frame"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
)

// TestWebChatDevices: the Devices panel lists the user's devices; its "log
// out" button closes another device's connection (4003); "log out all
// others" sends a second tab of the user back to the login form with the
// reason; the change-password form makes only the new password work.
func TestWebChatDevices(t *testing.T) {
	st := startWebStack(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	br := startWebBrowser(t, ctx, st.base)
	a := br.tab("A")
	user := "dana" + webSuffix()
	a.register(user)
	api := &webAPIUser{t: t, name: user}
	api.dial(ctx, st.ws)
	api.login(ctx) // device "api-<user>"

	other := `#devices li.device[data-device=` + jsString("api-"+user) + `]`
	listed := `document.querySelector(` + jsString(other) + `) !== null && document.querySelectorAll('#devices li.device').length === 2`
	deadline := time.Now().Add(webWait)
	for { // the list comes from a read model that follows the log within a moment
		a.click("refresh the devices", "#devices-btn")
		if a.holds(listed, 2*time.Second) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the API device is not listed: %s", a.state())
		}
	}
	a.click("log out the API device", other+" button.logout-device")
	select {
	case <-api.c.Done():
	case <-time.After(webWait):
		t.Fatal("the logged-out device's connection is still open")
	}
	if code, reason := api.c.CloseStatus(); code != 4003 {
		t.Fatalf("the logged-out device's connection closed with %v %q, want 4003", code, reason)
	}

	b := br.tab("B")
	b.login(user)
	// A pointer click can land elsewhere while the page re-renders: it
	// counts once the page confirms it (logging out the others again is
	// harmless).
	confirmed := `document.getElementById('notice').textContent.includes('every other device is logged out')`
	for try := 0; ; try++ {
		a.click("log out all others", "#logout-others-btn")
		if a.holds(confirmed, 10*time.Second) {
			break
		}
		if try == 2 {
			t.Fatalf("logging out the other devices was never confirmed: %s", a.state())
		}
	}
	b.waitFor("B back at the login form, told why",
		`!document.getElementById('auth').hidden && document.getElementById('error').textContent.includes('logged out')`)

	a.run("type the current password", chromedp.SetValue("#password-old", webPassword, chromedp.ByQuery))
	a.submit("change the password", "#password-form", "#password-new", "a brand new password")
	a.waitFor("the change to be confirmed", `document.getElementById('notice').textContent.includes('password changed')`)
	login := func(password string) *mpimv1.Response {
		c, err := client.Dial(ctx, st.ws, &client.Options{Encoding: frame.JSON})
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		r, err := c.Call(ctx, &mpimv1.ClientFrame_Login{Login: &mpimv1.LoginRequest{Username: user, Password: password, DeviceId: "check", Platform: "test"}})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := login(webPassword); r.GetError().GetCode() != "bad_credentials" {
		t.Fatalf("the old password: %v, want bad_credentials", r)
	}
	if r := login("a brand new password"); r.GetError() != nil {
		t.Fatalf("the new password: %v", r.GetError())
	}
}
