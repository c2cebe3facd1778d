package schema

import "github.com/mpim/mpim/internal/readmodel"

// otherTables are the remaining tables Migrate creates.
var otherTables = []string{
	"schema_migrations",      // the runner's bookkeeping
	"projector_checkpoints",  // how far each projector got, per partition
	"event_archive",          // the archiver projector's copy of the log, one row per event (before 0005, and re-applied entries)
	"event_archive_segments", // the archiver projector's copy of the log, one row per batch
	"quarantine",             // events a projector could not apply
	"auth_tokens",            // sessions, written by the gateway
	"read_model_checkpoints", // the MySQL projector's checkpoints, swapped with its tables
	"read_model_control",     // pauses the MySQL projector while a rebuild swaps tables
}

// ReadModelTables returns the tables the MySQL projector derives from the log
// alone, as internal/readmodel names them, in the order migrations create
// them: a rebuild from position zero recreates exactly these (and their
// projector's checkpoints), and a rebuilt copy can be compared with the live
// one table by table (e.g. CHECKSUM TABLE). The caller may modify the slice.
func ReadModelTables() []string {
	return readmodel.Tables()
}

// Tables returns every table Migrate creates, schema_migrations included. The
// caller may modify the slice.
func Tables() []string {
	return append(append([]string(nil), otherTables...), readmodel.Tables()...)
}
