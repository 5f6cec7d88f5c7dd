package pg

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tributary-ml/tributary/libs/cdc"
	"github.com/tributary-ml/tributary/services/ingest/internal/core"
)

// StreamConfig configures a replication stream.
type StreamConfig struct {
	Slot, Publication string
	Tables            []TableName
	Policy            KeyPolicy
	Rules             core.MaskRules
	// StatusInterval is how often the confirmed position is reported.
	StatusInterval time.Duration
	// MaxBatch bounds the records of one batch inside a large transaction.
	MaxBatch int
}

// Stats are the stream's gauges, read by the metrics callbacks.
type Stats struct {
	// ServerWALEnd is the server's WAL position as last reported.
	ServerWALEnd atomic.Uint64
	// Confirmed is the position last reported as flushed.
	Confirmed atomic.Uint64
}

// Stream reads the slot from start (0: the slot's confirmed position) and
// hands batches to out. It reports as flushed only what progress says Kafka
// acknowledged. It returns when ctx ends (after a last status update) or
// the connection fails.
type Stream struct {
	cfg      StreamConfig
	repl     *pgconn.PgConn
	catalog  *pgconn.PgConn
	batcher  *core.Batcher
	types    *core.Types
	progress *core.Progress
	stats    *Stats
	log      *slog.Logger

	rows      tupleDecoder
	captured  map[TableName]bool
	relations map[uint32]*core.Table

	inTxn      bool
	commitLSN  uint64
	xid        uint32
	commitTime time.Time
	enqueued   uint64
	idle       uint64
	confirmed  uint64
}

// NewStream builds a stream on an open replication connection repl; catalog
// is a normal connection used to look up keys and types on Relation messages.
func NewStream(cfg StreamConfig, repl, catalog *pgconn.PgConn, enc *core.Encoder, tombstones bool, progress *core.Progress, stats *Stats, log *slog.Logger) *Stream {
	if cfg.StatusInterval <= 0 {
		cfg.StatusInterval = time.Second
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 1000
	}
	s := &Stream{
		cfg: cfg, repl: repl, catalog: catalog,
		batcher:  &core.Batcher{Enc: enc, Tombstones: tombstones},
		types:    enc.Mapper.Types,
		progress: progress, stats: stats, log: log,
		captured:  map[TableName]bool{},
		relations: map[uint32]*core.Table{},
	}
	for _, t := range cfg.Tables {
		s.captured[t] = true
	}
	return s
}

// Run streams until ctx ends or the connection fails.
func (s *Stream) Run(ctx context.Context, start uint64, out chan<- *core.Batch) error {
	s.confirmed = s.progress.Acked()
	s.stats.Confirmed.Store(s.confirmed)
	err := pglogrepl.StartReplication(ctx, s.repl, s.cfg.Slot, pglogrepl.LSN(start), pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names " + quoteLiteral(s.cfg.Publication)},
	})
	if err != nil {
		return fmt.Errorf("start replication on slot %s: %w", s.cfg.Slot, err)
	}
	s.log.Info("streaming", "slot", s.cfg.Slot, "from", FormatLSN(start))
	err = s.loop(ctx, out)
	if ctx.Err() != nil {
		// A last report of what Kafka acknowledged, so a clean stop re-sends little.
		fctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = s.sendStatus(fctx, false)
		return nil
	}
	return err
}

func (s *Stream) flushLSN() uint64 {
	f := core.FlushLSN(s.progress.Acked(), s.enqueued, s.idle, s.inTxn)
	if f < s.confirmed {
		f = s.confirmed
	}
	return f
}

func (s *Stream) sendStatus(ctx context.Context, reply bool) error {
	f := s.flushLSN()
	err := pglogrepl.SendStandbyStatusUpdate(ctx, s.repl, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: pglogrepl.LSN(f), WALFlushPosition: pglogrepl.LSN(f), WALApplyPosition: pglogrepl.LSN(f),
		ReplyRequested: reply,
	})
	if err != nil {
		return fmt.Errorf("send standby status: %w", err)
	}
	s.confirmed = f
	s.stats.Confirmed.Store(f)
	return nil
}

// send hands b to the writer, keeping the replication connection alive while
// the writer is behind (Kafka slow or down: this is the backpressure that
// stops WAL reading).
func (s *Stream) send(ctx context.Context, out chan<- *core.Batch, b *core.Batch) error {
	t := time.NewTimer(s.cfg.StatusInterval)
	defer t.Stop()
	for {
		select {
		case out <- b:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			if err := s.sendStatus(ctx, false); err != nil {
				return err
			}
			t.Reset(s.cfg.StatusInterval)
		}
	}
}

func (s *Stream) loop(ctx context.Context, out chan<- *core.Batch) error {
	next := time.Now().Add(s.cfg.StatusInterval)
	dl := &deadline{}
	dl.reset(ctx, next)
	defer dl.stop()
	for {
		if !time.Now().Before(next) {
			if err := s.sendStatus(ctx, false); err != nil {
				return err
			}
			next = time.Now().Add(s.cfg.StatusInterval)
			dl.reset(ctx, next)
		}
		// One deadline context per status interval, not per message: the
		// receive returns at the deadline so the status report is never late.
		raw, err := s.repl.ReceiveMessage(dl.ctx)
		if err != nil {
			if pgconn.Timeout(err) && ctx.Err() == nil {
				continue
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("receive replication message: %w", err)
		}
		switch msg := raw.(type) {
		case *pgproto3.CopyData:
			if err := s.handleCopyData(ctx, out, msg.Data); err != nil {
				return err
			}
		case *pgproto3.ErrorResponse:
			return fmt.Errorf("replication stream: %w", pgconn.ErrorResponseToPgError(msg))
		default:
			// Notices and the like carry nothing for us.
		}
	}
}

func (s *Stream) handleCopyData(ctx context.Context, out chan<- *core.Batch, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	switch data[0] {
	case pglogrepl.PrimaryKeepaliveMessageByteID:
		ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
		if err != nil {
			return fmt.Errorf("parse keepalive: %w", err)
		}
		end := uint64(ka.ServerWALEnd)
		if end > s.stats.ServerWALEnd.Load() {
			s.stats.ServerWALEnd.Store(end)
		}
		if !s.inTxn && end > s.idle {
			s.idle = end
		}
		if ka.ReplyRequested {
			return s.sendStatus(ctx, false)
		}
	case pglogrepl.XLogDataByteID:
		xld, err := pglogrepl.ParseXLogData(data[1:])
		if err != nil {
			return fmt.Errorf("parse xlogdata: %w", err)
		}
		if end := uint64(xld.ServerWALEnd); end > s.stats.ServerWALEnd.Load() {
			s.stats.ServerWALEnd.Store(end)
		}
		return s.handleWAL(ctx, out, uint64(xld.WALStart), xld.WALData)
	}
	return nil
}

func (s *Stream) handleWAL(ctx context.Context, out chan<- *core.Batch, lsn uint64, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	switch data[0] {
	case 'I', 'U', 'D':
		rc, err := s.rows.decodeRow(data)
		if err != nil {
			return fmt.Errorf("decode pgoutput message %q at %s: %w", data[0], FormatLSN(lsn), err)
		}
		op := cdc.OpCreate
		switch data[0] {
		case 'U':
			op = cdc.OpUpdate
		case 'D':
			op = cdc.OpDelete
		}
		return s.change(ctx, out, rc.rel, op, lsn, rc.before, rc.after)
	}
	m, err := pglogrepl.Parse(data)
	if err != nil {
		return fmt.Errorf("decode pgoutput message %q at %s: %w", data[0], FormatLSN(lsn), err)
	}
	switch m := m.(type) {
	case *pglogrepl.RelationMessage:
		return s.relation(ctx, m)
	case *pglogrepl.BeginMessage:
		s.inTxn = true
		s.commitLSN = uint64(m.FinalLSN)
		s.xid = m.Xid
		s.commitTime = m.CommitTime
	case *pglogrepl.CommitMessage:
		s.batcher.Commit(uint64(m.TransactionEndLSN), s.commitTime)
		s.inTxn = false
		if err := s.send(ctx, out, s.take()); err != nil {
			return err
		}
		s.enqueued = uint64(m.TransactionEndLSN)
	case *pglogrepl.TruncateMessage:
		for _, id := range m.RelationIDs {
			if err := s.change(ctx, out, id, cdc.OpTruncate, lsn, nil, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *Stream) relation(ctx context.Context, m *pglogrepl.RelationMessage) error {
	name := TableName{m.Namespace, m.RelationName}
	if !s.captured[name] {
		s.relations[m.RelationID] = nil
		return nil
	}
	info, err := LookupTable(ctx, s.catalog, name, s.cfg.Policy)
	if err != nil {
		return err
	}
	cols := make([]core.Column, len(m.Columns))
	oids := make([]uint32, len(m.Columns))
	for i, c := range m.Columns {
		cols[i] = core.Column{Name: c.Name, OID: c.DataType}
		oids[i] = c.DataType
	}
	if err := ResolveTypes(ctx, s.catalog, s.types, oids); err != nil {
		return err
	}
	t, err := core.NewTable(name.Schema, name.Name, cols, info.Key, s.cfg.Rules)
	if err != nil {
		return err
	}
	if old := s.relations[m.RelationID]; old != nil {
		s.log.Info("table shape changed", "table", name.String(), "columns", len(cols))
	}
	s.relations[m.RelationID] = t
	return nil
}

func (s *Stream) change(ctx context.Context, out chan<- *core.Batch, rel uint32, op string, lsn uint64, before, after []core.Datum) error {
	t, ok := s.relations[rel]
	if !ok {
		return fmt.Errorf("change for relation %d before its Relation message", rel)
	}
	if t == nil {
		return nil
	}
	ch := core.Change{
		Table: t, Op: op, Before: before, After: after,
		Pos:  cdc.Position{CommitLSN: s.commitLSN, LSN: lsn},
		TxID: s.xid, CommitTime: s.commitTime, Snapshot: "false",
	}
	s.batcher.Add(&ch)
	if s.batcher.Len() >= s.cfg.MaxBatch {
		return s.send(ctx, out, s.take())
	}
	return nil
}

// take takes the open batch, marked with the transaction it belongs to.
func (s *Stream) take() *core.Batch {
	b := s.batcher.Take()
	b.TxnLSN, b.CommitTime = s.commitLSN, s.commitTime
	return b
}

// ErrSlotBusy means another connection is streaming from the slot.
var ErrSlotBusy = errors.New("slot is in use by another connection")

type deadline struct {
	ctx    context.Context
	cancel context.CancelFunc
}

func (d *deadline) reset(parent context.Context, at time.Time) {
	d.stop()
	d.ctx, d.cancel = context.WithDeadline(parent, at)
}

func (d *deadline) stop() {
	if d.cancel != nil {
		d.cancel()
	}
}
