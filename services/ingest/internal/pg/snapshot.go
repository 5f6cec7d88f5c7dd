package pg

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tributary-ml/tributary/libs/cdc"
	"github.com/tributary-ml/tributary/services/ingest/internal/core"
)

// CreatedSlot is a new slot with the snapshot it exported.
type CreatedSlot struct {
	ConsistentPoint uint64
	SnapshotName    string
}

// CreateSlot creates a logical slot with pgoutput on the replication
// connection and exports its snapshot. The snapshot stays usable until repl
// runs another command, so take the snapshot before starting to stream.
func CreateSlot(ctx context.Context, repl *pgconn.PgConn, slot string) (CreatedSlot, error) {
	res, err := pglogrepl.CreateReplicationSlot(ctx, repl, slot, "pgoutput", pglogrepl.CreateReplicationSlotOptions{
		SnapshotAction: "EXPORT_SNAPSHOT", Mode: pglogrepl.LogicalReplication,
	})
	if err != nil {
		return CreatedSlot{}, fmt.Errorf("create replication slot %s: %w", slot, err)
	}
	cp, err := parseLSN(res.ConsistentPoint)
	if err != nil {
		return CreatedSlot{}, fmt.Errorf("create replication slot %s: consistent point: %w", slot, err)
	}
	return CreatedSlot{ConsistentPoint: cp, SnapshotName: res.SnapshotName}, nil
}

// DropSlot drops a slot (used when a snapshot was interrupted).
func DropSlot(ctx context.Context, conn *pgconn.PgConn, slot string) error {
	if _, err := query(ctx, conn, `SELECT pg_drop_replication_slot($1)`, slot); err != nil {
		return fmt.Errorf("drop replication slot %s: %w", slot, err)
	}
	return nil
}

// SnapshotConfig configures an initial snapshot.
type SnapshotConfig struct {
	SnapshotName    string
	ConsistentPoint uint64
	Tables          []TableName
	Policy          KeyPolicy
	Rules           core.MaskRules
	MaxBatch        int
}

// Snapshot reads every table in the exported snapshot on conn (a normal
// connection) and hands the rows, as op r, to out. Every row carries the
// consistent point as its position; the snapshot's final row is marked
// snapshot "last". It returns the number of rows read.
func Snapshot(ctx context.Context, conn *pgconn.PgConn, cfg SnapshotConfig, batcher *core.Batcher, out chan<- *core.Batch) (int, error) {
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 1000
	}
	begin := "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT " + quoteLiteral(cfg.SnapshotName)
	if _, err := conn.Exec(ctx, begin).ReadAll(); err != nil {
		return 0, fmt.Errorf("snapshot: use exported snapshot %s: %w", cfg.SnapshotName, err)
	}
	defer func() { _, _ = conn.Exec(context.WithoutCancel(ctx), "ROLLBACK").ReadAll() }()

	now := time.Now()
	send := func(b *core.Batch) error {
		select {
		case out <- b:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	var prev *core.Change
	rows := 0
	for _, tn := range cfg.Tables {
		t, err := snapshotTable(ctx, conn, tn, cfg, batcher.Enc.Mapper.Types)
		if err != nil {
			return rows, err
		}
		rr := conn.ExecParams(ctx, "SELECT * FROM "+tn.Quoted(), nil, nil, nil, nil)
		for rr.NextRow() {
			vals := rr.Values()
			row := make([]core.Datum, len(vals))
			for i, v := range vals {
				if v == nil {
					row[i] = core.Datum{Kind: core.KindNull}
				} else {
					row[i] = core.Datum{Kind: core.KindText, Data: append([]byte(nil), v...)}
				}
			}
			if prev != nil {
				batcher.Add(prev)
				if batcher.Len() >= cfg.MaxBatch {
					if err := send(batcher.Take()); err != nil {
						_, _ = rr.Close()
						return rows, err
					}
				}
			}
			prev = &core.Change{
				Table: t, Op: cdc.OpRead, After: row,
				Pos:        cdc.Position{CommitLSN: cfg.ConsistentPoint, LSN: cfg.ConsistentPoint},
				CommitTime: now, Snapshot: "true",
			}
			rows++
		}
		if _, err := rr.Close(); err != nil {
			return rows, fmt.Errorf("snapshot: read %s: %w", tn, err)
		}
	}
	if prev != nil {
		prev.Snapshot = "last"
		batcher.Add(prev)
	}
	if batcher.Len() > 0 {
		if err := send(batcher.Take()); err != nil {
			return rows, err
		}
	}
	return rows, nil
}

func snapshotTable(ctx context.Context, conn *pgconn.PgConn, tn TableName, cfg SnapshotConfig, types *core.Types) (*core.Table, error) {
	info, err := LookupTable(ctx, conn, tn, cfg.Policy)
	if err != nil {
		return nil, err
	}
	rr := conn.ExecParams(ctx, "SELECT * FROM "+tn.Quoted()+" LIMIT 0", nil, nil, nil, nil)
	fields := rr.FieldDescriptions()
	cols := make([]core.Column, len(fields))
	oids := make([]uint32, len(fields))
	for i, f := range fields {
		cols[i] = core.Column{Name: f.Name, OID: f.DataTypeOID}
		oids[i] = f.DataTypeOID
	}
	if _, err := rr.Close(); err != nil {
		return nil, fmt.Errorf("snapshot: columns of %s: %w", tn, err)
	}
	if err := ResolveTypes(ctx, conn, types, oids); err != nil {
		return nil, err
	}
	return core.NewTable(tn.Schema, tn.Name, cols, info.Key, cfg.Rules)
}
