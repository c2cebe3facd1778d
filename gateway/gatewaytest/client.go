// Package gatewaytest is the gateway's test harness: a gateway in process
// on real Redis and MariaDB with the real write side (Env), a hub in memory
// (FakeHub), request builders, and the protocol client (package client)
// dialled with the encoding as an argument, as most tests run once per
// encoding. It never runs the projectors: package stacktest does.
package gatewaytest

import (
	"context"

	"github.com/mpim/mpim/client"
	"github.com/mpim/mpim/proto/frame"
)

// Client is a client.Conn.
type Client = client.Conn

// Options are client.Options; Dial sets the encoding.
type Options = client.Options

// Dial connects to the gateway's WebSocket URL (ws://host/ws) with enc.
func Dial(ctx context.Context, url string, enc frame.Encoding, opts *Options) (*Client, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	o.Encoding = enc
	return client.Dial(ctx, url, &o)
}
