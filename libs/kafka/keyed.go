package kafka

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"sync"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/trace"
)

// KeyedWriter writes keyed records of one topic straight to the leaders of
// their partitions, through kafka-go's Client: one produce request per
// partition and at most maxRequestBytes of records, the partitions in
// parallel, each in order. It places a record where kafka-go's Writer with
// the Hash balancer (Producer's default) does, so the two can take turns on
// a compacted topic. kafka-go's Writer looks up the topic's metadata and
// copies every record into a batch per record, which cost a featurizer
// flush of tens of thousands of tiles more than encoding them.
//
// Retriable errors (a leader moving, a broker restarting) are retried with
// backoff; Write returns when every record was acknowledged by all
// in-sync replicas, or with the error that stopped a partition. It is safe
// for concurrent use.
type KeyedWriter struct {
	client   *kafkago.Client
	topic    string
	parts    int
	attempts int
	backoff  time.Duration

	mu      sync.Mutex
	byPart  [][]int
	records []kafkago.Record
	bytes   []byteSlice
}

// maxRequestBytes bounds the records of one produce request, below the
// broker's default message.max.bytes (1 MiB) for one record batch.
const maxRequestBytes = 900 << 10

// NewKeyedWriter looks up topic's partition count (which must not change
// afterwards: records are placed by it) and returns a writer.
func NewKeyedWriter(ctx context.Context, brokers []string, topic string) (*KeyedWriter, error) {
	if len(brokers) == 0 {
		return nil, errors.New("keyed writer: no brokers")
	}
	c := &kafkago.Client{Addr: kafkago.TCP(brokers...), Timeout: 10 * time.Second, Transport: &kafkago.Transport{}}
	md, err := c.Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, fmt.Errorf("keyed writer: metadata of %s: %w", topic, err)
	}
	parts := 0
	for _, t := range md.Topics {
		if t.Name == topic {
			if t.Error != nil {
				return nil, fmt.Errorf("keyed writer: topic %s: %w", topic, t.Error)
			}
			parts = len(t.Partitions)
		}
	}
	if parts == 0 {
		return nil, fmt.Errorf("keyed writer: topic %s has no partitions", topic)
	}
	return &KeyedWriter{client: c, topic: topic, parts: parts, attempts: 5, backoff: 50 * time.Millisecond}, nil
}

// Close closes the writer's connections.
func (w *KeyedWriter) Close() error {
	w.client.Transport.(*kafkago.Transport).CloseIdleConnections()
	return nil
}

// PartitionOf is the partition kafka-go's Hash balancer gives key among n:
// FNV-1a, as a signed 32-bit number, modulo n, made positive.
func PartitionOf(key []byte, n int) int {
	h := fnv.New32a()
	_, _ = h.Write(key)
	p := int32(h.Sum32()) % int32(n)
	if p < 0 {
		p = -p
	}
	return int(p)
}

// Write writes msgs (each with a key; a nil value is a tombstone) and
// returns once all were acknowledged. Records without headers carry the
// trace context of ctx (a new trace without one), as Producer's do.
func (w *KeyedWriter) Write(ctx context.Context, msgs ...Message) error {
	if len(msgs) == 0 {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !trace.SpanContextFromContext(ctx).IsValid() {
		ctx = trace.ContextWithSpanContext(ctx, newRootSpanContext())
	}
	var shared []Header
	traceContext.Inject(ctx, headerCarrier{&shared})
	shared = shared[:len(shared):len(shared)]

	if len(w.byPart) != w.parts {
		w.byPart = make([][]int, w.parts)
	}
	for p := range w.byPart {
		w.byPart[p] = w.byPart[p][:0]
	}
	w.records = growRecords(w.records, len(msgs))
	w.bytes = growBytes(w.bytes, 2*len(msgs))
	now := time.Now()
	for i := range msgs {
		m := &msgs[i]
		if m.Key == nil {
			return fmt.Errorf("keyed writer: record %d of %d has no key", i, len(msgs))
		}
		r := &w.records[i]
		*r = kafkago.Record{Time: m.Time, Headers: m.Headers}
		if r.Time.IsZero() {
			r.Time = now
		}
		if len(r.Headers) == 0 {
			r.Headers = shared
		}
		r.Key = w.bytes[2*i].reset(m.Key)
		if m.Value != nil {
			r.Value = w.bytes[2*i+1].reset(m.Value)
		}
		p := PartitionOf(m.Key, w.parts)
		w.byPart[p] = append(w.byPart[p], i)
	}

	var wg sync.WaitGroup
	errs := make([]error, w.parts)
	for p, idx := range w.byPart {
		if len(idx) == 0 {
			continue
		}
		wg.Go(func() { errs[p] = w.writePartition(ctx, p, idx, msgs) })
	}
	wg.Wait()
	clear(w.records[:len(msgs)])
	return errors.Join(errs...)
}

// writePartition writes the records idx (in order) to partition p, in
// requests of at most maxRequestBytes, one after another.
func (w *KeyedWriter) writePartition(ctx context.Context, p int, idx []int, msgs []Message) error {
	recs := make([]kafkago.Record, 0, min(len(idx), 4096))
	for done := 0; done < len(idx); {
		recs = recs[:0]
		size := 0
		end := done
		for end < len(idx) {
			m := &msgs[idx[end]]
			n := 64 + len(m.Key) + len(m.Value)
			for _, h := range m.Headers {
				n += 16 + len(h.Key) + len(h.Value)
			}
			if end > done && size+n > maxRequestBytes {
				break
			}
			size += n
			recs = append(recs, w.records[idx[end]])
			end++
		}
		if err := w.produce(ctx, p, recs); err != nil {
			return fmt.Errorf("%s/%d: %d of %d records written: %w", w.topic, p, done, len(idx), err)
		}
		done = end
	}
	return nil
}

// produce sends one request, retrying retriable errors. A retried request
// re-reads its records from the start.
func (w *KeyedWriter) produce(ctx context.Context, p int, recs []kafkago.Record) error {
	backoff := w.backoff
	var err error
	for attempt := 1; ; attempt++ {
		for i := range recs {
			rewind(recs[i].Key)
			rewind(recs[i].Value)
		}
		var res *kafkago.ProduceResponse
		res, err = w.client.Produce(ctx, &kafkago.ProduceRequest{
			Topic: w.topic, Partition: p, RequiredAcks: kafkago.RequireAll,
			Records: kafkago.NewRecordReader(recs...),
		})
		if err == nil {
			err = res.Error
			for i, e := range res.RecordErrors {
				err = errors.Join(err, fmt.Errorf("record %d: %w", i, e))
			}
		}
		if err == nil {
			return nil
		}
		if attempt >= w.attempts || !retriable(err) || ctx.Err() != nil {
			return err
		}
		if !waitBackoff(ctx, backoff) {
			return ctx.Err()
		}
		backoff = min(2*backoff, time.Second)
	}
}

// retriable reports whether a produce error may go away by itself.
func retriable(err error) bool {
	var ke kafkago.Error
	if errors.As(err, &ke) {
		return ke.Temporary()
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

func growRecords(s []kafkago.Record, n int) []kafkago.Record {
	if cap(s) < n {
		return make([]kafkago.Record, n)
	}
	return s[:n]
}

func growBytes(s []byteSlice, n int) []byteSlice {
	if cap(s) < n {
		return make([]byteSlice, n)
	}
	return s[:n]
}

// byteSlice is a record key or value for kafka-go's encoder (its Bytes:
// a reader that knows its length), without an allocation per record.
type byteSlice struct {
	b   []byte
	off int
}

func (s *byteSlice) reset(b []byte) *byteSlice {
	s.b, s.off = b, 0
	return s
}

func (s *byteSlice) Len() int { return len(s.b) - s.off }

func (s *byteSlice) Read(p []byte) (int, error) {
	if s.off >= len(s.b) {
		return 0, io.EOF
	}
	n := copy(p, s.b[s.off:])
	s.off += n
	return n, nil
}

// WriteTo hands the bytes over in one write.
func (s *byteSlice) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(s.b[s.off:])
	s.off += n
	return int64(n), err
}

func (s *byteSlice) Close() error { return nil }

// rewind makes a record's key or value readable from its start again.
func rewind(b kafkago.Bytes) {
	if s, ok := b.(*byteSlice); ok {
		s.off = 0
	}
}
