package archiver

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"

	"github.com/tributary-ml/tributary/libs/featurespec"
	"github.com/tributary-ml/tributary/libs/kafka"
	"github.com/tributary-ml/tributary/services/offline/internal/archive"
)

// Plan says how a topic's records become rows.
type Plan struct {
	// cdc: values are Debezium change events.
	cdc bool
	// viewSource: a feature view reads the topic, so its rows get an
	// event time: eventTime's field, or the record time when empty.
	viewSource bool
	eventTime  string
}

// Plans derives each topic's Plan from the feature views: topics named
// cdc.* or read by a view in debezium format hold change events; a topic
// several views read takes the event-time field of the first view by name
// that declares one.
func Plans(views []*featurespec.View, topics []string) map[string]Plan {
	plans := map[string]Plan{}
	for _, t := range topics {
		plans[t] = Plan{cdc: strings.HasPrefix(t, "cdc.")}
	}
	sorted := slices.Clone(views)
	slices.SortFunc(sorted, func(a, b *featurespec.View) int { return strings.Compare(a.Name, b.Name) })
	for _, v := range sorted {
		p := plans[v.Source.Topic]
		p.viewSource = true
		if v.Source.Format == featurespec.FormatDebezium {
			p.cdc = true
		}
		if p.eventTime == "" {
			p.eventTime = v.Source.EventTime
		}
		plans[v.Source.Topic] = p
	}
	return plans
}

// envelope is a Debezium change event keeping the row images as raw JSON
// text, with or without the JSON converter's schema wrapper.
type envelope struct {
	Before json.RawMessage `json:"before"`
	After  json.RawMessage `json:"after"`
	Op     string          `json:"op"`
	Source struct {
		LSN int64 `json:"lsn"`
	} `json:"source"`
	Payload *envelope `json:"payload"`
}

// Row makes m's archive row. A value that does not decode is archived all
// the same (raw), without the decoded fields: the archive keeps what Kafka
// held.
func (p Plan) Row(m *kafka.Message) archive.Row {
	r := archive.Row{
		Topic: m.Topic, Partition: int32(m.Partition), Offset: m.Offset,
		Key: m.Key, Value: m.Value, ArrivalMs: m.Time.UnixMilli(),
	}
	if m.Value == nil {
		return r // a tombstone
	}
	var image json.RawMessage
	if p.cdc {
		var e envelope
		if json.Unmarshal(m.Value, &e) != nil {
			return r
		}
		if e.Op == "" && e.Payload != nil {
			e = *e.Payload
		}
		r.Op, r.LSN = e.Op, e.Source.LSN
		r.Before, r.After = rawText(e.Before), rawText(e.After)
		image = e.After
		if r.After == "" {
			image = e.Before // a delete: its time is the old row's
		}
	} else {
		image = m.Value
	}
	if !p.viewSource {
		return r
	}
	if p.eventTime == "" {
		r.EventMs = r.ArrivalMs
		return r
	}
	var fields map[string]json.RawMessage
	if json.Unmarshal(image, &fields) != nil {
		return r
	}
	raw, ok := fields[p.eventTime]
	if !ok {
		return r
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if d.Decode(&v) != nil {
		return r
	}
	if ms, err := featurespec.EventTime(v); err == nil {
		r.EventMs = ms
	}
	return r
}

// rawText is a JSON image as text; JSON null and absence are "".
func rawText(b json.RawMessage) string {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || string(b) == "null" {
		return ""
	}
	return string(b)
}

// CDC reports whether the topic's values are Debezium change events.
func (p Plan) CDC() bool { return p.cdc }

// EventTimeField is the field holding the event time ("" when the topic
// is no view's source or its view uses the record time).
func (p Plan) EventTimeField() string { return p.eventTime }
