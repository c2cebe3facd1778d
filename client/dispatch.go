package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
)

// Gateway is a dispatcher's answer: the gateway a client should connect
// to.
type Gateway struct {
	ID   string `json:"id"`
	Addr string `json:"addr"` // host:port
}

// URL returns the gateway's WebSocket URL.
func (g Gateway) URL() string { return "ws://" + g.Addr + "/ws" }

// Dispatch asks a dispatcher (GET http://host:port/dispatch, served by
// every gateway) which gateway to connect to. hc nil is
// http.DefaultClient; ctx bounds the request.
func Dispatch(ctx context.Context, hc *http.Client, url string) (Gateway, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return Gateway{}, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return Gateway{}, fmt.Errorf("client: dispatch: %w", err)
	}
	defer resp.Body.Close()
	var out struct {
		Gateway
		Error string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return Gateway{}, fmt.Errorf("client: dispatch: %s: %w", resp.Status, err)
	}
	if resp.StatusCode != http.StatusOK {
		return Gateway{}, fmt.Errorf("client: dispatch: %s: %s", resp.Status, out.Error)
	}
	return out.Gateway, nil
}
