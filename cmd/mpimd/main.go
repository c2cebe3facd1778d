// Command mpimd is mpim's server binary.
//
//	mpimd gateway     serve clients over WebSocket (/ws) and the dispatcher (/dispatch)
//	mpimd projector   run the projectors (read models, inboxes, archive, trim)
//	mpimd all         both in one process
//
// Settings come from flags, MPIM_* environment variables or a JSON file named
// by --config (keys are flag names), in that order of precedence; every bad
// setting is reported at once. SIGINT or SIGTERM shuts down gracefully:
// partitions are handed over only after their in-flight batch finished.
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

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "mpimd:", err)
		os.Exit(2)
	}
}

// run dispatches a subcommand; it returns when ctx ends or the subcommand
// fails.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: mpimd gateway|projector|all [flags]   (mpimd gateway --help)")
		return errors.New("no subcommand given")
	}
	switch args[0] {
	case "projector", "gateway", "all":
		m := &Main{Stdout: stdout, Stderr: stderr}
		if err := m.ParseFlags(args[0], args[1:]); err != nil {
			return err
		}
		return m.Run(ctx)
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, "usage: mpimd gateway|projector|all [flags]   (mpimd gateway --help)")
		return nil
	}
	return fmt.Errorf("unknown subcommand %q", args[0])
}
