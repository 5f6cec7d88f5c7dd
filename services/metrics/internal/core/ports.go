package core

import (
	"context"
	"errors"
)

// Query selects rows of one model (and optionally one version and variant)
// with FromMs ≤ minute < ToMs.
type Query struct {
	Model, Version, Variant string
	FromMs, ToMs            int64
	// Limit bounds the rows returned; a reader returns at most Limit+1 so
	// the caller can tell the answer was cut.
	Limit int
}

// RowReader is the query side of the metrics store: the embedded store in
// development, Pinot in production.
type RowReader interface {
	// Minutes returns the selected rows ordered by minute, version, variant.
	Minutes(ctx context.Context, q Query) ([]Row, error)
	// Models lists the model keys with a row in [fromMs, toMs), sorted.
	Models(ctx context.Context, fromMs, toMs int64) ([]ModelKey, error)
}

// RowWriter takes rows the service emitted. The embedded store implements
// it; Pinot ingests the rows from metrics.model_minute itself.
type RowWriter interface {
	Upsert(ctx context.Context, rows []Row) error
}

// ErrUnavailable wraps store errors a caller may retry.
var ErrUnavailable = errors.New("metrics store unavailable")

// LessModelKey orders model keys.
func LessModelKey(a, b ModelKey) bool {
	if a.Model != b.Model {
		return a.Model < b.Model
	}
	if a.Version != b.Version {
		return a.Version < b.Version
	}
	return a.Variant < b.Variant
}

// LessRow orders rows by minute, version and variant (and model).
func LessRow(a, b Row) bool {
	if a.Minute != b.Minute {
		return a.Minute < b.Minute
	}
	if a.Version != b.Version {
		return a.Version < b.Version
	}
	if a.Variant != b.Variant {
		return a.Variant < b.Variant
	}
	return a.Model < b.Model
}
