package core

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/tributary-ml/tributary/libs/cdc"
	"github.com/tributary-ml/tributary/libs/featurespec"
)

// routePlan is what the router needs of a view.
type routePlan struct {
	view    *featurespec.View
	name    []byte
	columns []string
	layout  uint32
}

// Router is the first stage: it decodes source records (Debezium change
// events or JSON), applies each view's filter, finds the entity and event
// time of every row change and renders it as a routed record for
// RepartitionTopic, keyed by view|entity. Sources keyed by something else
// than the view's entity (a CDC table's primary key) are thereby
// re-keyed, so the aggregation stage sees all changes of one entity on one
// partition. It is not safe for concurrent use.
type Router struct {
	byTopic map[string][]*routePlan
	dedupe  *cdc.Deduper
	c       *Counters

	key, val []byte
	rt       routed
}

// NewRouter builds a router for views (already validated) counting into c.
func NewRouter(views []*featurespec.View, c *Counters) (*Router, error) {
	if len(views) == 0 {
		return nil, errors.New("featurizer router: no feature views")
	}
	r := &Router{byTopic: map[string][]*routePlan{}, dedupe: cdc.NewDeduper(), c: c}
	seen := map[string]bool{}
	for _, v := range views {
		if seen[v.Name] {
			return nil, fmt.Errorf("featurizer router: view %q is declared twice", v.Name)
		}
		seen[v.Name] = true
		cols := viewColumns(v)
		r.byTopic[v.Source.Topic] = append(r.byTopic[v.Source.Topic], &routePlan{view: v, name: []byte(v.Name), columns: cols, layout: layoutOf(cols)})
	}
	return r, nil
}

// viewColumns lists the distinct columns a view's features aggregate, in
// feature order.
func viewColumns(v *featurespec.View) []string {
	var cols []string
	for _, f := range v.Features {
		if f.Column == "" {
			continue
		}
		found := false
		for _, c := range cols {
			if c == f.Column {
				found = true
				break
			}
		}
		if !found {
			cols = append(cols, f.Column)
		}
	}
	return cols
}

// Reads reports whether some view reads topic.
func (r *Router) Reads(topic string) bool { return len(r.byTopic[topic]) > 0 }

// Route decodes one source record and calls emit with the key and value
// of a routed record for every change it makes to a view (key and value
// are valid only during the call). A record that cannot be decoded is
// counted and skipped; the returned error says why, for logging.
func (r *Router) Route(rec Record, emit func(key, value []byte) error) error {
	views := r.byTopic[rec.Topic]
	if len(views) == 0 {
		return nil
	}
	r.c.Records.Add(1)
	var (
		row     map[string]any
		env     *cdc.Envelope
		rowErr  error
		envErr  error
		decoded [2]bool
		errs    []error
	)
	for _, vp := range views {
		var changes []change
		switch vp.view.Source.Format {
		case featurespec.FormatDebezium:
			if !decoded[1] {
				decoded[1] = true
				env, envErr = decodeDebezium(rec.Value)
				if envErr == nil && env.Source.Sequence != "" && env.Op != cdc.OpRead {
					pos, err := cdc.ParseSequence(env.Source.Sequence)
					if err != nil {
						envErr = err
					} else if !r.dedupe.Fresh(rec.Topic, rec.Partition, env.Op, pos) {
						r.c.Duplicates.Add(1)
						return nil
					}
				}
			}
			if envErr != nil {
				errs = append(errs, fmt.Errorf("view %s: %w", vp.view.Name, envErr))
				continue
			}
			changes = changesFor(env, vp.view.Source.Ops)
		default:
			if !decoded[0] {
				decoded[0] = true
				rowErr = decodeJSON(rec.Value, &row)
				if rowErr == nil && row == nil {
					rowErr = errors.New("value is not a JSON object")
				}
			}
			if rowErr != nil {
				errs = append(errs, fmt.Errorf("view %s: json record: %w", vp.view.Name, rowErr))
				continue
			}
			changes = []change{{row: row, add: true}}
		}
		update := env != nil && env.Op == cdc.OpUpdate
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

// routeChanges emits a view's changes of one record: the retract and add
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
		retEnt  string
		pendRet bool
	)
	flush := func(ent string, ret, add bool) error {
		rt.hasRetract, rt.hasAdd = ret, add
		rt.entity = append(rt.entity[:0], ent...)
		r.key = append(append(append(r.key[:0], vp.name...), '|'), ent...)
		r.val = appendRouted(r.val[:0], rt)
		return emit(r.key, r.val)
	}
	for _, c := range changes {
		if conds := vp.view.Source.Conditions; len(conds) > 0 && !featurespec.Match(conds, c.row) {
			continue
		}
		ent, err := entityOf(c.row, vp.view)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ts := rec.TimeMs
		if f := vp.view.Source.EventTime; f != "" {
			if ts, err = eventTime(c.row, f); err != nil {
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
		for _, col := range vp.columns {
			cv, err := colValOf(c.row[col])
			if err != nil {
				return fmt.Errorf("column %q: %w", col, err)
			}
			im.cols = append(im.cols, cv)
		}
		if !c.add {
			retEnt, pendRet = ent, true
			continue
		}
		if pendRet && retEnt != ent {
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
