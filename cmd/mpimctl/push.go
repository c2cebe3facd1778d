package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/mpim/mpim/push/webhook"
)

// maxSecretFileBytes bounds --webhook-secret-file.
const maxSecretFileBytes = 4096

// runPush is `mpimctl push dead-letters list|resend`: the webhook calls the
// push projector dead-lettered (docs/push.md).
func runPush(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const usage = "usage: mpimctl push dead-letters list [--after ID] [--limit N] [--json] | resend (--id ID | --all) --webhook-url URL --webhook-secret-file FILE"
	if len(args) < 2 || args[0] != "dead-letters" || (args[1] != "list" && args[1] != "resend") {
		return errors.New(usage)
	}
	fs, c := newFlags("push dead-letters "+args[1], stderr)
	after := fs.String("after", "", "list: dead letters after this id")
	limit := fs.Int("limit", 100, "list: at most this many (1..10000)")
	asJSON := fs.Bool("json", false, "list: JSON lines instead of human lines")
	secrets := fs.Bool("with-secrets", false, "list --json: print the devices' push tokens instead of "+redacted)
	id := fs.String("id", "", "resend: the dead letter to send again")
	all := fs.Bool("all", false, "resend: every dead letter there is now")
	url := fs.String("webhook-url", "", "resend: the webhook endpoint")
	secretFile := fs.String("webhook-secret-file", "", "resend: file holding the webhook's shared secret")
	if err := parse(fs, args[2:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if args[1] == "list" {
		if *limit < 1 || *limit > 10_000 {
			return fmt.Errorf("--limit must be 1..10000, got %d", *limit)
		}
		return pushList(ctx, c, *after, int64(*limit), *asJSON, *secrets, stdout)
	}
	if (*id == "") == !*all {
		return errors.New("resend: give exactly one of --id and --all")
	}
	secret, err := readSecret(*secretFile)
	if err != nil {
		return err
	}
	return pushResend(ctx, c, webhook.Config{URL: *url, Secret: secret}, *id, stdout)
}

// readSecret reads the webhook secret from file, without a final newline.
func readSecret(file string) ([]byte, error) {
	if file == "" {
		return nil, errors.New("resend: --webhook-secret-file is required")
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxSecretFileBytes {
		return nil, fmt.Errorf("--webhook-secret-file is over %d bytes", maxSecretFileBytes)
	}
	return []byte(strings.TrimRight(string(b), "\r\n")), nil
}

func pushList(ctx context.Context, c *common, after string, limit int64, asJSON, secrets bool, stdout io.Writer) error {
	store, rdb, err := c.openStore(ctx)
	if err != nil {
		return err
	}
	defer closeStore(store, rdb)
	dls, err := webhook.ListDeadLetters(ctx, rdb, webhook.DeadLetterKey(c.prefix), after, limit)
	if err != nil {
		return err
	}
	for _, d := range dls {
		if asJSON {
			body := json.RawMessage(d.Body)
			if !json.Valid(body) {
				body = nil
			} else if !secrets {
				body = redactTokens(body)
			}
			line, _ := json.Marshal(map[string]any{"id": d.ID, "at": d.At(), "key": d.Key, "user": d.User,
				"attempts": d.Attempts, "status": d.Status, "reason": d.Reason, "body": body})
			fmt.Fprintf(stdout, "%s\n", line)
			continue
		}
		fmt.Fprintf(stdout, "%s %s user=%s key=%s attempts=%d status=%d reason=%q\n", d.ID,
			d.At().Format("2006-01-02T15:04:05.000Z"), termSafe(d.User), termSafe(d.Key), d.Attempts, d.Status, d.Reason)
	}
	return nil
}

func pushResend(ctx context.Context, c *common, cfg webhook.Config, id string, stdout io.Writer) error {
	store, rdb, err := c.openStore(ctx)
	if err != nil {
		return err
	}
	defer closeStore(store, rdb)
	cfg.Window = webhook.DefaultWindow
	cfg.DeadLetterKey = webhook.DeadLetterKey(c.prefix)
	sender, err := webhook.New(rdb, cfg)
	if err != nil {
		return err
	}
	defer sender.Close(context.WithoutCancel(ctx))
	ids := []string{id}
	if id == "" { // --all: those there are now, not those that fail again meanwhile
		ids = nil
		for after := ""; ; {
			page, err := sender.DeadLetters(ctx, after, 1000)
			if err != nil {
				return err
			}
			if len(page) == 0 {
				break
			}
			for _, d := range page {
				ids = append(ids, d.ID)
			}
			after = page[len(page)-1].ID
		}
	}
	var failed []error
	sent := 0
	for _, id := range ids {
		if err := sender.Resend(ctx, id); err != nil {
			failed = append(failed, err)
			continue
		}
		sent++
	}
	fmt.Fprintf(stdout, "re-sent %d of %d dead letters\n", sent, len(ids))
	return errors.Join(failed...)
}

// redactTokens returns a call body with every device's push token read as
// redacted (a body that is not a webhook payload is returned as it is).
func redactTokens(body json.RawMessage) json.RawMessage {
	var p map[string]json.RawMessage
	var devices []map[string]json.RawMessage
	if json.Unmarshal(body, &p) != nil || json.Unmarshal(p["devices"], &devices) != nil {
		return body
	}
	for _, d := range devices {
		if _, ok := d["token"]; ok {
			d["token"] = json.RawMessage(`"` + redacted + `"`)
		}
	}
	p["devices"], _ = json.Marshal(devices)
	out, err := json.Marshal(p)
	if err != nil {
		return body
	}
	return out
}
