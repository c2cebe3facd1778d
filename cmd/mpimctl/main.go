// Command mpimctl is mpim's admin tool: follow the log, show stats, export
// events for analytics, read the log through a consumer group, rebuild read
// models.
//
//	mpimctl tail   [--partition N] [--json]       follow the log
//	mpimctl stats  [--json]                       partitions, projector checkpoints and lag, inboxes
//	mpimctl export [--since TIME] [--limit N]     NDJSON of events
//	mpimctl tap    --group NAME [--consumer C]    competing-consumer reader
//	mpimctl tap dlq list|requeue|purge --group NAME   a tap group's dead letters
//	mpimctl replay mysql [--fresh]                rebuild the MySQL read model while running
//	mpimctl replay unpause [--force]              lift a pause a replay left on the live projector
//	mpimctl quarantine list|reapply|drop          entries projectors set aside
//	mpimctl push dead-letters list|resend         webhook calls the push projector dead-lettered
//
// Settings come from flags, MPIM_* environment variables or --config FILE
// (JSON), in that order of precedence.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// command is one subcommand.
type subcommand struct {
	name, usage string
	run         func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []subcommand {
	return []subcommand{
		{"tail", "follow the log (human or --json lines)", runTail},
		{"stats", "partitions, projector checkpoints and lag, inbox sizes", runStats},
		{"export", "NDJSON of events from a position or time, for analytics", runExport},
		{"tap", "consumer-group reader: XREADGROUP, XACK, XAUTOCLAIM, dead-letter; --no-ack peeks; tap dlq list|requeue|purge", runTap},
		{"replay", "rebuild the MySQL read model while running, then swap: replay mysql; lift a replay's pause: replay unpause", runReplay},
		{"push", "webhook calls dead-lettered by the push projector: push dead-letters list|resend", runPush},
		{"quarantine", "entries projectors set aside: list [--projector P] [--json], reapply|drop PROJECTOR PARTITION POSITION", runQuarantine},
		{"chat", "terminal chat client over a gateway WebSocket: chat --gateway URL --user NAME", runChat},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "mpimctl:", err)
		os.Exit(2)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout)
		if len(args) == 0 {
			return errors.New("no command given")
		}
		return nil
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	usage(stderr)
	return fmt.Errorf("unknown command %q", args[0])
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: mpimctl COMMAND [flags]   (mpimctl COMMAND --help for flags)")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.usage)
	}
}
