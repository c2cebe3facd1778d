package main

import (
	"context"
	"fmt"

	"github.com/mpim/mpim/projectors/mysql"
)

// buildMySQLProjector constructs the projectors that write MySQL.
func buildMySQLProjector(_ context.Context, name string, _ *Config, d *deps) (checkpointed, error) {
	lg := d.lg.With("projector", name)
	switch name {
	case "mysql":
		return mysql.NewReadModel(d.db, mysql.Config{Logger: lg})
	case "archive":
		return mysql.NewArchiver(d.db, mysql.ArchiverConfig{Logger: lg})
	}
	return nil, fmt.Errorf("unknown projector %q", name)
}
