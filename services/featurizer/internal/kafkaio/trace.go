package kafkaio

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/tributary-ml/tributary/libs/aggregate"
	"github.com/tributary-ml/tributary/libs/kafka"
)

// Tracing through the featurizer (only sampled source records cost spans;
// the consumer makes their "process <source topic>" spans):
//
//   - a repartition batch record holding changes of sampled source records
//     gets one LinkHeader per such record (its process span's traceparent
//     and the view|entity keys of its changes, at most kafka.MaxLinks
//     records and maxLinkKeys keys each), and a PRODUCER span
//     "send featurizer.repartition" that continues the first one's trace
//     and links to the others; the record carries that span's context;
//   - the aggregator makes a CONSUMER span "process featurizer.repartition"
//     for a sampled batch record, and remembers, per view|entity its
//     sources changed, that span and the sources' contexts (at most
//     maxTracedEntities entities until the next flush);
//   - a tile of such an entity is written with a PRODUCER span
//     "send features.tiles" under the aggregator's span, linking to the
//     source contexts that changed it since the last flush; the tile
//     record carries that span's context, so the featureserver continues
//     the trace.

// LinkHeader is the repartition batch record header naming one sampled
// source record: its traceparent, then the routed keys (view|entity) of
// its changes in this batch record, each as uvarint length and bytes.
const LinkHeader = "tributary-link"

const (
	// maxLinkKeys bounds the keys one LinkHeader names.
	maxLinkKeys = 16
	// maxTracedEntities bounds the entities traced between two flushes.
	maxTracedEntities = 1024
	traceparentLen    = 55
)

// encodeLink renders a LinkHeader value.
func encodeLink(tp []byte, keys []string) []byte {
	n := len(tp)
	for _, k := range keys {
		n += binary.MaxVarintLen32 + len(k)
	}
	b := append(make([]byte, 0, n), tp...)
	for _, k := range keys {
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
	}
	return b
}

// decodeLink parses a LinkHeader value; keys alias v.
func decodeLink(v []byte) (trace.SpanContext, [][]byte, error) {
	if len(v) < traceparentLen {
		return trace.SpanContext{}, nil, errors.New("link header: shorter than a traceparent")
	}
	sc := kafka.SpanContextOf(v[:traceparentLen])
	if !sc.IsValid() {
		return sc, nil, errors.New("link header: invalid traceparent")
	}
	var keys [][]byte
	for p := traceparentLen; p < len(v); {
		n, k := binary.Uvarint(v[p:])
		if k <= 0 || n > uint64(len(v)-p-k) {
			return sc, nil, errors.New("link header: bad key length at byte " + strconv.Itoa(p))
		}
		p += k
		keys = append(keys, v[p:p+int(n)])
		p += int(n)
	}
	return sc, keys, nil
}

// routeLink is a sampled source record whose changes are in a batch
// record being filled.
type routeLink struct {
	sc   trace.SpanContext
	keys []string
}

// addLink notes that the source record traced by sc put a change of key
// into the batch record being filled.
func (pb *partBatches) addLink(sc trace.SpanContext, key []byte) {
	if n := len(pb.links); n > 0 && pb.links[n-1].sc.Equal(sc) {
		if l := &pb.links[n-1]; len(l.keys) < maxLinkKeys {
			l.keys = append(l.keys, string(key))
		}
		return
	}
	if len(pb.links) >= kafka.MaxLinks {
		return
	}
	pb.links = append(pb.links, routeLink{sc: sc, keys: []string{string(key)}})
}

// linkHeaders renders the links of the batch record being sealed.
func (pb *partBatches) linkHeaders() []kafka.Header {
	if len(pb.links) == 0 {
		return nil
	}
	hs := make([]kafka.Header, 0, len(pb.links)+1)
	for _, l := range pb.links {
		hs = append(hs, kafka.Header{Key: LinkHeader, Value: encodeLink(kafka.Traceparent(l.sc), l.keys)})
	}
	clear(pb.links)
	pb.links = pb.links[:0]
	return hs
}

// startBatchSpan starts the send span of a batch record with link headers
// (nil without) and puts its context into the record.
func startBatchSpan(ctx context.Context, tr trace.Tracer, m *kafka.Message, partition int) trace.Span {
	var links kafka.Links
	for _, h := range m.Headers {
		if h.Key == LinkHeader {
			if sc, _, err := decodeLink(h.Value); err == nil {
				links.Add(sc)
			}
		}
	}
	if links.Len() == 0 {
		return nil
	}
	parent := trace.ContextWithSpanContext(ctx, links.First())
	opts := append(links.Options(), trace.WithAttributes(
		attribute.String("messaging.destination.partition.id", strconv.Itoa(partition)),
		attribute.Int("messaging.message.body.size", len(m.Value)),
		attribute.Int("tributary.routed.sources", links.Len()+links.Dropped),
	))
	if k := kafka.KeyAttr(m.Key); k.Valid() {
		opts = append(opts, trace.WithAttributes(k))
	}
	sctx, span := kafka.StartSend(parent, tr, aggregate.RepartitionTopic, opts...)
	kafka.InjectTrace(sctx, m)
	return span
}

// tileTracer remembers, between two flushes of the aggregator, which
// entities sampled source records changed.
type tileTracer struct {
	tr    trace.Tracer
	byKey map[string]*entityTrace
}

// entityTrace is what changed one view|entity since the last flush: the
// aggregator span that applied the first traced change, and the sources.
type entityTrace struct {
	parent  trace.SpanContext
	sources kafka.Links
}

// applied notes the link headers of a sampled batch record applied under
// the span sc.
func (t *tileTracer) applied(sc trace.SpanContext, m *kafka.Message) {
	for _, h := range m.Headers {
		if h.Key != LinkHeader {
			continue
		}
		src, keys, err := decodeLink(h.Value)
		if err != nil {
			continue
		}
		for _, k := range keys {
			e := t.byKey[string(k)]
			if e == nil {
				if len(t.byKey) >= maxTracedEntities {
					continue
				}
				if t.byKey == nil {
					t.byKey = map[string]*entityTrace{}
				}
				e = &entityTrace{parent: sc}
				t.byKey[string(k)] = e
			}
			e.sources.Add(src)
		}
	}
}

// entityOf is the view|entity part of a tile key (view|entity|res|start).
func entityOf(tileKey []byte) []byte {
	i := bytes.LastIndexByte(tileKey, '|')
	if i <= 0 {
		return nil
	}
	j := bytes.LastIndexByte(tileKey[:i], '|')
	if j <= 0 {
		return nil
	}
	return tileKey[:j]
}

// start starts the send spans of the traced tiles among msgs and puts
// their contexts into those records; it returns the spans and forgets
// what it traced.
func (t *tileTracer) start(ctx context.Context, topic string, msgs []kafka.Message) []trace.Span {
	if t == nil || len(t.byKey) == 0 {
		return nil
	}
	var spans []trace.Span
	for i := range msgs {
		m := &msgs[i]
		e := t.byKey[string(entityOf(m.Key))]
		if e == nil {
			continue
		}
		parent := trace.ContextWithSpanContext(ctx, e.parent)
		opts := append(e.sources.Options(), trace.WithAttributes(attribute.Int("messaging.message.body.size", len(m.Value))))
		if k := kafka.KeyAttr(m.Key); k.Valid() {
			opts = append(opts, trace.WithAttributes(k))
		}
		if m.Value == nil {
			opts = append(opts, trace.WithAttributes(attribute.Bool("messaging.kafka.message.tombstone", true)))
		}
		sctx, span := kafka.StartSend(parent, t.tr, topic, opts...)
		kafka.InjectTrace(sctx, m)
		spans = append(spans, span)
	}
	clear(t.byKey)
	return spans
}
