// Package pinotstore answers the metrics queries from Apache Pinot's
// REALTIME table model_minute (fed from metrics.model_minute, upserted on
// pk) through the Pinot Go client.
package pinotstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/startreedata/pinot-client-go/pinot"

	"github.com/tributary-ml/tributary/services/metrics/internal/core"
)

// Table is the Pinot table of the rows.
const Table = "model_minute"

// AddedColumns are the row's columns beyond DESIGN's row contract with
// their Pinot data types; deploy/pinot's schema needs them for the adapter's
// queries (state is the mergeable aggregate totals and restores use).
func AddedColumns() map[string]string {
	return map[string]string{
		"score_js": "DOUBLE", "feature_js": "STRING", "precision": "DOUBLE", "recall": "DOUBLE",
		"log_loss": "DOUBLE", "auc": "DOUBLE", "calibration_error": "DOUBLE", "state": "STRING",
		"revision": "LONG",
	}
}

// MaxModels bounds ListModels.
const MaxModels = 10_000

var _ core.RowReader = (*Store)(nil)

// Store queries Pinot's broker.
type Store struct {
	conn    *pinot.Connection
	timeout time.Duration
}

// New connects to the broker at brokerURL (http://host:port); timeout
// bounds each query.
func New(brokerURL string, timeout time.Duration) (*Store, error) {
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	conn, err := pinot.NewWithConfigAndClient(&pinot.ClientConfig{
		BrokerList:  []string{strings.TrimSuffix(brokerURL, "/")},
		HTTPTimeout: timeout,
	}, &http.Client{})
	if err != nil {
		return nil, fmt.Errorf("pinot broker %s: %w", brokerURL, err)
	}
	return &Store{conn: conn, timeout: timeout}, nil
}

// query runs sql with params and turns exceptions in a 200 answer into errors.
func (s *Store) query(ctx context.Context, sql string, params ...any) (*pinot.ResultTable, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// The client takes no context: run it aside so a cancelled caller
	// returns at once (the request itself ends within the timeout).
	type result struct {
		resp *pinot.BrokerResponse
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := s.conn.ExecuteSQLWithParams(Table, sql, params)
		done <- result{resp, err}
	}()
	var r result
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case r = <-done:
	}
	if r.err != nil {
		return nil, fmt.Errorf("%w: pinot query: %v", core.ErrUnavailable, r.err)
	}
	if len(r.resp.Exceptions) > 0 {
		msgs := make([]string, len(r.resp.Exceptions))
		for i, e := range r.resp.Exceptions {
			msgs[i] = fmt.Sprintf("%d: %s", e.ErrorCode, e.Message)
		}
		return nil, fmt.Errorf("%w: pinot answered with exceptions: %s", core.ErrUnavailable, strings.Join(msgs, "; "))
	}
	if r.resp.ResultTable == nil {
		return &pinot.ResultTable{}, nil
	}
	return r.resp.ResultTable, nil
}

// quote makes a column name an SQL identifier: Pinot parses SQL with
// Calcite, where some of the columns (minute, precision) are reserved words.
func quote(col string) string { return `"` + col + `"` }

func quoteAll(cols []string) string {
	q := make([]string, len(cols))
	for i, c := range cols {
		q[i] = quote(c)
	}
	return strings.Join(q, ", ")
}

// Minutes selects rows; Pinot's upsert keeps the latest row per pk.
func (s *Store) Minutes(ctx context.Context, q core.Query) ([]core.Row, error) {
	var where strings.Builder
	params := []any{q.Model, q.FromMs, q.ToMs}
	where.WriteString(`"model" = ? AND "minute" >= ? AND "minute" < ?`)
	if q.Version != "" {
		where.WriteString(` AND "version" = ?`)
		params = append(params, q.Version)
	}
	if q.Variant != "" {
		where.WriteString(` AND "variant" = ?`)
		params = append(params, q.Variant)
	}
	limit := q.Limit
	if limit <= 0 {
		limit = 100_000
	}
	sql := fmt.Sprintf("SELECT %s FROM %s WHERE %s ORDER BY %s LIMIT %d",
		quoteAll(core.Columns()), Table, where.String(), quoteAll([]string{"minute", "version", "variant"}), limit+1)
	rt, err := s.query(ctx, sql, params...)
	if err != nil {
		return nil, err
	}
	rows := make([]core.Row, 0, len(rt.Rows))
	for i := range rt.Rows {
		r, err := decodeRow(rt, i)
		if err != nil {
			return nil, err
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// decodeRow turns result row i into a Row through the row's JSON form.
func decodeRow(rt *pinot.ResultTable, i int) (core.Row, error) {
	if len(rt.Rows[i]) != len(rt.DataSchema.ColumnNames) {
		return core.Row{}, fmt.Errorf("pinot row %d: %d values for %d columns", i, len(rt.Rows[i]), len(rt.DataSchema.ColumnNames))
	}
	obj := make(map[string]any, len(rt.DataSchema.ColumnNames))
	for j, name := range rt.DataSchema.ColumnNames {
		obj[name] = rt.Rows[i][j]
	}
	b, err := json.Marshal(obj)
	if err != nil {
		return core.Row{}, fmt.Errorf("pinot row %d: %w", i, err)
	}
	r, err := core.UnmarshalRow(b)
	if err != nil {
		return core.Row{}, fmt.Errorf("pinot row %d: %w", i, err)
	}
	return r, nil
}

// Models lists the model keys with rows in [fromMs, toMs).
func (s *Store) Models(ctx context.Context, fromMs, toMs int64) ([]core.ModelKey, error) {
	mvv := quoteAll([]string{"model", "version", "variant"})
	sql := fmt.Sprintf(`SELECT %s FROM %s WHERE "minute" >= ? AND "minute" < ? GROUP BY %s ORDER BY %s LIMIT %d`, mvv, Table, mvv, mvv, MaxModels)
	rt, err := s.query(ctx, sql, fromMs, toMs)
	if err != nil {
		return nil, err
	}
	idx := map[string]int{}
	for j, n := range rt.DataSchema.ColumnNames {
		idx[n] = j
	}
	for _, c := range []string{"model", "version", "variant"} {
		if _, ok := idx[c]; !ok && len(rt.Rows) > 0 {
			return nil, errors.New("pinot answer lacks column " + c)
		}
	}
	out := make([]core.ModelKey, 0, len(rt.Rows))
	for i := range rt.Rows {
		out = append(out, core.ModelKey{
			Model:   rt.GetString(i, idx["model"]),
			Version: rt.GetString(i, idx["version"]),
			Variant: rt.GetString(i, idx["variant"]),
		})
	}
	return out, nil
}
