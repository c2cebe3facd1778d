package clientaddr

import "testing"

func TestKeyGroupsIPv6By64(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1:443":             "192.0.2.1",
		"[::ffff:192.0.2.1]:1":      "192.0.2.1",
		"[2001:db8:1:2:3:4:5:6]:80": "2001:db8:1:2::/64",
		"2001:db8:1:2::9":           "2001:db8:1:2::/64",
		"[fe80::1%eth0]:80":         "fe80::/64",
		"not an address":            "not an address",
	} {
		if got := Key(in); got != want {
			t.Errorf("Key(%q) = %q, want %q", in, got, want)
		}
	}
}
