package aggregate

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/tributary-ml/tributary/libs/cdc"
	"github.com/tributary-ml/tributary/libs/featurespec"
)

// routePlan is what the router needs of a view. Indexes point into the
// fields the router extracts for the view's topic.
type routePlan struct {
	view    *featurespec.View
	name    []byte
	columns []string
	layout  uint32
	joinIdx []int
	tsIdx   int
	colIdx  []int
	condIdx []int
}

// topicPlan is what the router extracts of one topic's records: the union
// of the columns its views read (join keys, event time, filter and feature
// columns).
type topicPlan struct {
	cols  []string
	views []*routePlan
}

// Router is the first stage: it decodes source records (Debezium change
// events or JSON), applies each view's filter, finds the entity and event
// time of every row change and renders it as a routed record for
// RepartitionTopic, keyed by view|entity. Sources keyed by something else
// than the view's entity (a CDC table's primary key) are thereby
// re-keyed, so the aggregation stage sees all changes of one entity on one
// partition. It is not safe for concurrent use.
type Router struct {
	byTopic map[string]*topicPlan
	dedupe  *cdc.Deduper
	c       *Counters

	key, val, ent []byte
	rt            routed
	rows          [3][]colVal
	env, inner    fastEnvelope
	cond          map[string]any
}

// NewRouter builds a router for views (already validated) counting into c.
func NewRouter(views []*featurespec.View, c *Counters) (*Router, error) {
	if len(views) == 0 {
		return nil, errors.New("featurizer router: no feature views")
	}
	r := &Router{byTopic: map[string]*topicPlan{}, dedupe: cdc.NewDeduper(), c: c, cond: map[string]any{}}
	seen := map[string]bool{}
	for _, v := range views {
		if seen[v.Name] {
			return nil, fmt.Errorf("featurizer router: view %q is declared twice", v.Name)
		}
		seen[v.Name] = true
		tp := r.byTopic[v.Source.Topic]
		if tp == nil {
			tp = &topicPlan{}
			r.byTopic[v.Source.Topic] = tp
		}
		idx := func(col string) int {
			if k := slices.Index(tp.cols, col); k >= 0 {
				return k
			}
			tp.cols = append(tp.cols, col)
			return len(tp.cols) - 1
		}
		cols := viewColumns(v)
		rp := &routePlan{view: v, name: []byte(v.Name), columns: cols, layout: layoutOf(cols), tsIdx: -1}
		for _, k := range v.Entity.JoinKeys {
			rp.joinIdx = append(rp.joinIdx, idx(k))
		}
		if v.Source.EventTime != "" {
			rp.tsIdx = idx(v.Source.EventTime)
		}
		for _, c := range cols {
			rp.colIdx = append(rp.colIdx, idx(c))
		}
		for _, c := range v.Source.Conditions {
			rp.condIdx = append(rp.condIdx, idx(c.Column))
		}
		tp.views = append(tp.views, rp)
	}
	return r, nil
}

// viewColumns lists the distinct columns a view's features aggregate, in
// feature order.
func viewColumns(v *featurespec.View) []string {
	var cols []string
	for _, f := range v.Features {
		if f.Column != "" && !slices.Contains(cols, f.Column) {
			cols = append(cols, f.Column)
		}
	}
	return cols
}

// Reads reports whether some view reads topic.
func (r *Router) Reads(topic string) bool { return r.byTopic[topic] != nil }

// dbzChange is a decoded Debezium event: its op and row images (nil when
// absent) as fields of the topic plan.
type dbzChange struct {
	op            string
	sequence      string
	before, after []colVal
	// pos is the stream position (source.sequence) of a streamed change;
	// hasPos is false for snapshot rows and events without a sequence.
	pos    cdc.Position
	hasPos bool
}

// Route decodes one source record and calls emit with the key and value
// of a routed record for every change it makes to a view (key and value
// are valid only during the call). A record that cannot be decoded is
// counted and skipped; the returned error says why, for logging. A record
// without a value (a tombstone on a compacted topic) is counted as one
// and skipped without error.
func (r *Router) Route(rec Record, emit func(key, value []byte) error) error {
	tp := r.byTopic[rec.Topic]
	if tp == nil {
		return nil
	}
	r.c.Records.Add(1)
	if len(rec.Value) == 0 {
		// A tombstone: the record without a value ingest writes after a
		// delete (the delete event itself carries the change) so that
		// compaction can drop the key. Nothing to route.
		r.c.Tombstones.Add(1)
		return nil
	}
	var (
		row     []colVal
		dbz     dbzChange
		rowErr  error
		envErr  error
		decoded [2]bool
		errs    []error
		chs     [2]change
	)
	for _, vp := range tp.views {
		var changes []change
		update := false
		switch vp.view.Source.Format {
		case featurespec.FormatDebezium:
			if !decoded[1] {
				decoded[1] = true
				dbz, envErr = r.decodeDebezium(tp, rec.Value)
				if envErr == nil && dbz.sequence != "" && dbz.op != cdc.OpRead {
					pos, err := cdc.ParseSequence(dbz.sequence)
					if err != nil {
						envErr = err
					} else if !r.dedupe.Fresh(rec.Topic, rec.Partition, dbz.op, pos) {
						r.c.Duplicates.Add(1)
						return nil
					} else {
						dbz.pos, dbz.hasPos = pos, true
					}
				}
			}
			if envErr != nil {
				errs = append(errs, fmt.Errorf("view %s: %w", vp.view.Name, envErr))
				continue
			}
			changes = changesFor(&dbz, vp.view.Source.Ops, chs[:0])
			update = dbz.op == cdc.OpUpdate
			r.rt.hasPos, r.rt.pos = dbz.hasPos, dbz.pos
		default:
			if !decoded[0] {
				decoded[0] = true
				row, rowErr = r.decodeRow(tp, rec.Value)
			}
			if rowErr != nil {
				errs = append(errs, fmt.Errorf("view %s: json record: %w", vp.view.Name, rowErr))
				continue
			}
			chs[0] = change{row: row, add: true}
			changes = chs[:1]
			r.rt.hasPos = false
		}
		if err := r.routeChanges(vp, changes, update, rec, emit); err != nil {
			errs = append(errs, fmt.Errorf("view %s: %w", vp.view.Name, err))
		}
	}
	if len(errs) > 0 {
		r.c.Invalid.Add(1)
		return errors.Join(errs...)
	}
	return nil
}

// trimmed returns the start and end of b's JSON value without the
// surrounding whitespace.
func trimmed(b []byte) (int, int) {
	s := skipSpace(b, 0)
	e := len(b)
	for e > s && (b[e-1] == ' ' || b[e-1] == '\t' || b[e-1] == '\n' || b[e-1] == '\r') {
		e--
	}
	return s, e
}

func (r *Router) scratch(i, n int) []colVal {
	if cap(r.rows[i]) < n {
		r.rows[i] = make([]colVal, n)
	}
	return r.rows[i][:n]
}

// decodeRow extracts the topic's columns of a JSON record: with the
// scanner, or with encoding/json when the scanner gives up.
func (r *Router) decodeRow(tp *topicPlan, b []byte) ([]colVal, error) {
	out := r.scratch(2, len(tp.cols))
	if s, e := trimmed(b); s < e && b[s] == '{' && scanRow(b, s, e, tp.cols, out) {
		return out, nil
	}
	var m map[string]any
	if err := decodeJSON(b, &m); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, errors.New("value is not a JSON object")
	}
	return fieldsOf(m, tp.cols, out)
}

// decodeDebezium decodes a change event: with the scanner, or with
// encoding/json when the scanner gives up.
func (r *Router) decodeDebezium(tp *topicPlan, b []byte) (dbzChange, error) {
	if c, ok := r.scanDebezium(tp, b); ok {
		return c, checkOp(c.op, c.after != nil)
	}
	env, err := decodeDebezium(b)
	if err != nil {
		return dbzChange{}, err
	}
	c := dbzChange{op: env.Op, sequence: env.Source.Sequence}
	if env.Before != nil {
		if c.before, err = fieldsOf(env.Before, tp.cols, r.scratch(0, len(tp.cols))); err != nil {
			return dbzChange{}, err
		}
	}
	if env.After != nil {
		if c.after, err = fieldsOf(env.After, tp.cols, r.scratch(1, len(tp.cols))); err != nil {
			return dbzChange{}, err
		}
	}
	return c, nil
}

func (r *Router) scanDebezium(tp *topicPlan, b []byte) (dbzChange, bool) {
	s, e := trimmed(b)
	if s >= e || b[s] != '{' || !scanEnvelope(b, s, e, false, &r.env) {
		return dbzChange{}, false
	}
	env := &r.env
	if len(env.op) == 0 && env.hasPayload {
		if !scanEnvelope(b, env.payloadS, env.payloadE, true, &r.inner) {
			return dbzChange{}, false
		}
		env = &r.inner
	}
	var c dbzChange
	switch string(env.op) {
	case cdc.OpCreate:
		c.op = cdc.OpCreate
	case cdc.OpRead:
		c.op = cdc.OpRead
	case cdc.OpUpdate:
		c.op = cdc.OpUpdate
	case cdc.OpDelete:
		c.op = cdc.OpDelete
	case cdc.OpTruncate:
		c.op = cdc.OpTruncate
	default:
		c.op = string(env.op)
	}
	if len(env.sequence) > 0 {
		c.sequence = string(env.sequence)
	}
	if env.hasBefore {
		c.before = r.scratch(0, len(tp.cols))
		if !scanRow(b, env.beforeS, env.beforeE, tp.cols, c.before) {
			return dbzChange{}, false
		}
	}
	if env.hasAfter {
		c.after = r.scratch(1, len(tp.cols))
		if !scanRow(b, env.afterS, env.afterE, tp.cols, c.after) {
			return dbzChange{}, false
		}
	}
	return c, true
}

// fieldsOf picks cols out of a row decoded by encoding/json.
func fieldsOf(m map[string]any, cols []string, out []colVal) ([]colVal, error) {
	for k, c := range cols {
		cv, err := colValOf(m[c])
		if err != nil {
			return nil, fmt.Errorf("column %q: %w", c, err)
		}
		out[k] = cv
	}
	return out, nil
}

// routeChanges emits a view's changes of one record (its CDC stream
// position, if any, already in r.rt): the retract and add
// images of an update as one routed record when they belong to the same
// entity, as two otherwise. A change whose row fails the view's filter is
// left out; one without a join key or event time is an error (the other
// change of the record still goes out).
func (r *Router) routeChanges(vp *routePlan, changes []change, update bool, rec Record, emit func(key, value []byte) error) error {
	rt := &r.rt
	rt.view = vp.name
	rt.srcTopic = append(rt.srcTopic[:0], rec.Topic...)
	rt.srcPart, rt.srcOffset = int64(rec.Partition), rec.Offset
	rt.layout = vp.layout
	rt.update = update
	var (
		errs    []error
		retEnt  []byte
		pendRet bool
	)
	flush := func(ent []byte, ret, add bool) error {
		rt.hasRetract, rt.hasAdd = ret, add
		rt.entity = append(rt.entity[:0], ent...)
		r.key = append(append(append(r.key[:0], vp.name...), '|'), ent...)
		r.val = appendRouted(r.val[:0], rt)
		return emit(r.key, r.val)
	}
	for _, c := range changes {
		if conds := vp.view.Source.Conditions; len(conds) > 0 {
			clear(r.cond)
			for k, cond := range conds {
				r.cond[cond.Column] = anyOf(c.row[vp.condIdx[k]])
			}
			if !featurespec.Match(conds, r.cond) {
				continue
			}
		}
		ent, err := r.entityOf(vp, c.row)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ts := rec.TimeMs
		if vp.tsIdx >= 0 {
			if ts, err = eventTimeOf(c.row[vp.tsIdx], vp.view.Source.EventTime); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		im := &rt.add
		if !c.add {
			im = &rt.retract
		}
		im.ts = ts
		im.cols = im.cols[:0]
		for _, k := range vp.colIdx {
			im.cols = append(im.cols, c.row[k])
		}
		if !c.add {
			retEnt, pendRet = append(retEnt[:0], ent...), true
			continue
		}
		if pendRet && string(retEnt) != string(ent) {
			if err := flush(retEnt, true, false); err != nil {
				return err
			}
			pendRet = false
		}
		if err := flush(ent, pendRet, true); err != nil {
			return err
		}
		pendRet = false
	}
	if pendRet {
		if err := flush(retEnt, true, false); err != nil {
			return err
		}
	}
	return errors.Join(errs...)
}

// entityOf renders a row's entity id from the view's join keys (values
// joined by ',' as tiles.EntityID does) into the router's scratch buffer.
func (r *Router) entityOf(vp *routePlan, row []colVal) ([]byte, error) {
	r.ent = r.ent[:0]
	for i, k := range vp.joinIdx {
		if i > 0 {
			r.ent = append(r.ent, ',')
		}
		name := vp.view.Entity.JoinKeys[i]
		c := row[k]
		switch c.kind {
		case kindNull:
			return nil, fmt.Errorf("join key %q is missing", name)
		case kindString:
			if len(c.text) == 0 {
				return nil, fmt.Errorf("join key %q is empty", name)
			}
			r.ent = append(r.ent, c.text...)
		case kindNumber:
			r.ent = append(r.ent, c.text...)
		case kindTrue:
			r.ent = append(r.ent, "true"...)
		case kindFalse:
			r.ent = append(r.ent, "false"...)
		default:
			return nil, fmt.Errorf("join key %q: an object or array is not a string or number", name)
		}
	}
	return r.ent, nil
}

func colValOf(v any) (colVal, error) {
	switch x := v.(type) {
	case nil:
		return colVal{kind: kindNull}, nil
	case string:
		return colVal{kind: kindString, text: []byte(x)}, nil
	case json.Number:
		return colVal{kind: kindNumber, text: []byte(x)}, nil
	case float64:
		return colVal{kind: kindNumber, text: strconv.AppendFloat(nil, x, 'g', -1, 64)}, nil
	case bool:
		if x {
			return colVal{kind: kindTrue}, nil
		}
		return colVal{kind: kindFalse}, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return colVal{}, err
	}
	return colVal{kind: kindRaw, text: b}, nil
}

// anyOf is the value the tile IRs take for a routed column, as
// encoding/json with UseNumber would have produced it.
func anyOf(c colVal) any {
	switch c.kind {
	case kindString:
		return string(c.text)
	case kindNumber:
		return json.Number(c.text)
	case kindTrue:
		return true
	case kindFalse:
		return false
	case kindRaw:
		return json.RawMessage(append([]byte(nil), c.text...))
	}
	return nil
}
