package core

import (
	"sort"
	"strconv"
	"time"
)

// Catalog answers what the metrics need about a model version. It is
// called once per model version and minute row, never per prediction.
type Catalog interface {
	Model(model, version string) ModelInfo
}

// Source is where a record came from; dedupe against restored rows uses it.
// A negative Offset means unknown (never deduplicated).
type Source struct {
	Topic     string
	Partition int
	Offset    int64
}

type topicPartition struct {
	topic     string
	partition int
}

// AggregatorConfig bounds the aggregator's state.
type AggregatorConfig struct {
	// LabelTTL is how long (in event time) a prediction waits for its label
	// and a label for its prediction; rows stay in memory that long too.
	LabelTTL time.Duration
	// MaxPending bounds the predictions and labels waiting to be joined;
	// the oldest are dropped first.
	MaxPending int
}

// DefaultAggregatorConfig is a one-hour label window of at most a million records.
func DefaultAggregatorConfig() AggregatorConfig {
	return AggregatorConfig{LabelTTL: time.Hour, MaxPending: 1_000_000}
}

// Stats counts what the aggregator did with its input.
type Stats struct {
	Predictions, Labels int64
	// Duplicates are redelivered records already counted in a row.
	Duplicates int64
	// DuplicateLabels are second labels for one prediction (the first counts).
	DuplicateLabels int64
	// ExpiredLabels never met their prediction within the TTL (or bound).
	ExpiredLabels int64
	// LatePredictions were older than the label TTL behind the newest event
	// time and had no row in memory; they are dropped.
	LatePredictions int64
	// LateLabels arrived after their prediction's row left memory.
	LateLabels int64
	// Rows is the number of rows in memory, Pending the records waiting to be joined.
	Rows, Pending int
}

type entry struct {
	key   Key
	state *State
	info  ModelInfo
	dirty bool
	plan  featurePlan
}

// featurePlan remembers, for the feature names of the last prediction
// folded into an entry (in their order), where each one's baseline bins and
// live bin counts are, so that a prediction with the same names (the
// common case: one model logs the same inputs in the same order) is folded
// without a map operation per feature.
type featurePlan struct {
	state  *State // the plan is about this state's maps
	names  []string
	bins   []*Bins   // nil: not in the baseline
	counts [][]int64 // the live slices of state.BaselineFeatures
}

func (pl *featurePlan) matches(s *State, fs []Feature) bool {
	if pl.state != s || len(pl.names) != len(fs) {
		return false
	}
	for i := range fs {
		if pl.names[i] != fs[i].Name {
			return false
		}
	}
	return true
}

// add folds p into the entry's state exactly like State.add.
func (e *entry) add(p *Prediction) {
	s := e.state
	if !s.addScalars(p) {
		return
	}
	base := e.info.Baseline
	pl := &e.plan
	if !pl.matches(s, p.Features) {
		pl.state = s
		pl.names, pl.bins, pl.counts = pl.names[:0], pl.bins[:0], pl.counts[:0]
		for _, f := range p.Features {
			if _, ok := s.Defaulted[f.Name]; !ok {
				s.Defaulted[f.Name] = 0
			}
			var bins *Bins
			var counts []int64
			if base != nil {
				if b, ok := base.Features[f.Name]; ok {
					bins = &b
					counts = s.featureCounts(f.Name, b, len(base.Features))
				}
			}
			pl.names = append(pl.names, f.Name)
			pl.bins = append(pl.bins, bins)
			pl.counts = append(pl.counts, counts)
		}
	}
	if base == nil {
		return
	}
	if s.BaselineScore == nil {
		s.BaselineScore = make([]int64, len(base.Score.Fractions))
	}
	s.BaselineScore[base.Score.Bin(p.Score)]++
	for i, f := range p.Features {
		if c := pl.counts[i]; c != nil {
			c[pl.bins[i].Bin(f.Value)]++
		}
	}
}

// joined is a prediction waiting for its label. Predictions sharing a
// join id (a served prediction and its shadows, whose Parent is the served
// one's id) are chained through next.
type joined struct {
	id      string // the prediction's own id
	next    *joined
	key     Key
	score   float64
	tsMs    int64
	src     Source // where the prediction came from
	labeled bool
}

// pendingLabel is a label kept for the label TTL: until its predictions
// arrive, and after it joined one (joined), for shadow predictions of the
// same id that arrive later.
type pendingLabel struct {
	value  float64
	tsMs   int64
	src    Source
	joined bool
}

type queued struct {
	id    string
	tsMs  int64
	label bool
}

// Aggregator folds predictions and labels into per-minute states. It does
// no I/O and is not safe for concurrent use: the consumer calls it from one
// goroutine, in partition order.
type Aggregator struct {
	cfg     AggregatorConfig
	catalog Catalog

	rows  map[Key]*entry
	dirty []*entry // changed since the last Flush
	// recent are the last rows folded into, looked up before rows (a
	// key's hash covers three strings); cleared when rows leave memory.
	recent [4]*entry
	next   int

	handled map[topicPartition]*int64
	tpNames map[topicPartition]string
	// lastTP, lastHandled: handled's entry of the previous record.
	lastTP      topicPartition
	lastHandled *int64

	// preds are the predictions waiting for labels by join id (their
	// own id, or their Parent's), labels the labels by prediction id.
	preds  map[string]*joined
	labels map[string]pendingLabel
	queue  []queued // join entries in arrival order, for expiry
	qhead  int

	// watermark is the latest event time seen; expiry follows it, not the
	// wall clock, so a replay makes the same decisions.
	watermark int64
	stats     Stats
}

// NewAggregator returns an empty aggregator.
func NewAggregator(cfg AggregatorConfig, catalog Catalog) *Aggregator {
	def := DefaultAggregatorConfig()
	if cfg.LabelTTL <= 0 {
		cfg.LabelTTL = def.LabelTTL
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = def.MaxPending
	}
	return &Aggregator{
		cfg: cfg, catalog: catalog,
		rows:    map[Key]*entry{},
		handled: map[topicPartition]*int64{}, tpNames: map[topicPartition]string{},
		preds: map[string]*joined{}, labels: map[string]pendingLabel{},
	}
}

func (a *Aggregator) tpName(tp topicPartition) string {
	n, ok := a.tpNames[tp]
	if !ok {
		n = tp.topic + "/" + strconv.Itoa(tp.partition)
		a.tpNames[tp] = n
	}
	return n
}

// redelivered records src as handled and reports whether this process
// handled it before (a consumer rebalance re-reads from the committed offset).
func (a *Aggregator) redelivered(src Source) bool {
	if src.Offset < 0 {
		return false
	}
	tp := topicPartition{src.Topic, src.Partition}
	h := a.lastHandled
	if h == nil || a.lastTP != tp {
		h = a.handled[tp]
		if h == nil {
			h = new(int64)
			*h = src.Offset
			a.handled[tp] = h
			a.lastTP, a.lastHandled = tp, h
			return false
		}
		a.lastTP, a.lastHandled = tp, h
	}
	if src.Offset <= *h {
		a.stats.Duplicates++
		return true
	}
	*h = src.Offset
	return false
}

// counted reports whether e's restored offsets show src already counted in
// it (before a restart).
func (a *Aggregator) counted(src Source, e *entry) bool {
	if src.Offset < 0 || e.state.Offsets == nil {
		return false
	}
	o, ok := e.state.Offsets[a.tpName(topicPartition{src.Topic, src.Partition})]
	return ok && src.Offset <= o
}

func (a *Aggregator) row(k Key) *entry {
	e := a.rows[k]
	if e == nil {
		e = &entry{key: k, state: NewState(), info: a.catalog.Model(k.Model, k.Version)}
		a.rows[k] = e
	}
	return e
}

// lookup finds k's row in memory (nil if none), trying the recent rows first.
func (a *Aggregator) lookup(k Key) *entry {
	for _, e := range a.recent {
		if e != nil && e.key.Minute == k.Minute && e.key.ModelKey == k.ModelKey {
			return e
		}
	}
	e := a.rows[k]
	if e != nil {
		a.recent[a.next] = e
		a.next = (a.next + 1) % len(a.recent)
	}
	return e
}

func (a *Aggregator) markDirty(e *entry) {
	if !e.dirty {
		e.dirty = true
		a.dirty = append(a.dirty, e)
	}
}

// AddPrediction folds one prediction of key k (whose Minute is the
// prediction's minute) made at tsMs into its row.
func (a *Aggregator) AddPrediction(id string, k Key, tsMs int64, p *Prediction, src Source) {
	a.stats.Predictions++
	if tsMs > a.watermark {
		a.watermark = tsMs
	}
	dup := a.redelivered(src)
	e := a.lookup(k)
	if e == nil {
		if k.Minute < a.cut() {
			// Its row may already have left memory: a fresh row would
			// overwrite the published one with a partial state.
			a.stats.LatePredictions++
			return
		}
		e = a.row(k)
	}
	if !dup && a.counted(src, e) {
		dup = true
		a.stats.Duplicates++
	}
	if !dup {
		e.add(p)
		a.markDirty(e)
	}
	if p.Failed || id == "" {
		return
	}
	jid, j := a.join(id, p.Parent, k, tsMs, p.Score, src)
	if j == nil {
		return
	}
	if l, ok := a.labels[jid]; ok {
		a.applyLabel(j, l)
		l.joined = true
		a.labels[jid] = l
	}
	a.expire()
}

// join puts prediction id into the label join under its join id (parent,
// for a shadow prediction, else id) and returns both; j is nil when the
// prediction is already in the join.
func (a *Aggregator) join(id, parent string, k Key, tsMs int64, score float64, src Source) (jid string, j *joined) {
	jid = id
	if parent != "" {
		jid = parent
	}
	head := a.preds[jid]
	for o := head; o != nil; o = o.next {
		if o.id == id {
			return jid, nil
		}
	}
	j = &joined{id: id, next: head, key: k, score: score, tsMs: tsMs, src: src}
	a.preds[jid] = j
	a.queue = append(a.queue, queued{id: jid, tsMs: tsMs})
	return jid, j
}

// Remember puts a prediction into the label join without counting it: at
// start the join is rebuilt from the predictions of the last label TTL, so
// labels of predictions before the committed position still find them.
// A shadow prediction's parent is the id its labels carry.
func (a *Aggregator) Remember(id, parent string, k Key, tsMs int64, score float64, failed bool, src Source) {
	if failed || id == "" {
		return
	}
	if tsMs > a.watermark {
		a.watermark = tsMs
	}
	a.join(id, parent, k, tsMs, score, src)
	a.expire()
}

// AddLabel joins a label to its prediction and that prediction's shadow
// predictions, and keeps it (within the TTL) for those that arrive later.
func (a *Aggregator) AddLabel(id string, value float64, tsMs int64, src Source) {
	a.stats.Labels++
	if a.redelivered(src) {
		return
	}
	if _, ok := a.labels[id]; ok {
		a.stats.DuplicateLabels++
		return
	}
	l := pendingLabel{value: value, tsMs: tsMs, src: src}
	for j := a.preds[id]; j != nil; j = j.next {
		a.applyLabel(j, l)
		l.joined = true
	}
	a.labels[id] = l
	a.queue = append(a.queue, queued{id: id, tsMs: tsMs, label: true})
	a.expire()
}

func (a *Aggregator) applyLabel(j *joined, l pendingLabel) {
	if j.labeled {
		a.stats.DuplicateLabels++
		return
	}
	j.labeled = true
	e := a.rows[j.key]
	if e == nil {
		if j.key.Minute < a.cut() {
			a.stats.LateLabels++
			return
		}
		// The prediction is in the join but not in a row in memory: it was
		// remembered at start and will be redelivered (or was published
		// before a restart and its row is older than memory).
		e = a.row(j.key)
	}
	// A label is in a published row only if both it and its prediction
	// were handled before that row was published (a label that waited for
	// its prediction may have a lower offset than the row records and still
	// not be in it).
	if a.counted(l.src, e) && (j.src.Offset < 0 || a.counted(j.src, e)) {
		a.stats.Duplicates++
		return
	}
	th := e.info.Threshold
	e.state.addLabel(j.score, l.value, th)
	a.markDirty(e)
}

// expire drops join entries older than the TTL behind the watermark, and
// the oldest beyond MaxPending.
func (a *Aggregator) expire() {
	cut := a.watermark - a.cfg.LabelTTL.Milliseconds()
	for a.qhead < len(a.queue) {
		q := a.queue[a.qhead]
		if q.tsMs >= cut && len(a.queue)-a.qhead <= a.cfg.MaxPending {
			break
		}
		if q.label {
			if l, ok := a.labels[q.id]; ok && l.tsMs == q.tsMs {
				delete(a.labels, q.id)
				if !l.joined {
					a.stats.ExpiredLabels++
				}
			}
		} else {
			a.unjoin(q.id, q.tsMs)
		}
		a.queue[a.qhead] = queued{}
		a.qhead++
	}
	// Compact the queue once its dead head dominates.
	if a.qhead > 1024 && a.qhead*2 > len(a.queue) {
		a.queue = append(a.queue[:0], a.queue[a.qhead:]...)
		a.qhead = 0
	}
}

// unjoin drops the predictions of join id jid made at or before tsMs
// (their TTL ended), keeping those of the same join id made later.
func (a *Aggregator) unjoin(jid string, tsMs int64) {
	var head *joined
	tail := &head
	for j := a.preds[jid]; j != nil; j = j.next {
		if j.tsMs > tsMs {
			*tail = j
			tail = &j.next
		}
	}
	*tail = nil
	if head == nil {
		delete(a.preds, jid)
	} else {
		a.preds[jid] = head
	}
}

// Flush returns the rows changed since the last Flush (full state, copies
// safe to keep), records in each the input offsets handled so far, and drops
// rows older than the label TTL from memory.
func (a *Aggregator) Flush() []Row {
	out := make([]Row, 0, len(a.dirty))
	for _, e := range a.dirty {
		e.dirty = false
		offs := make(map[string]int64, len(a.handled)+len(e.state.Offsets))
		for tp, o := range e.state.Offsets {
			offs[tp] = o
		}
		for tp, o := range a.handled {
			n := a.tpName(tp)
			if cur, ok := offs[n]; !ok || *o > cur {
				offs[n] = *o
			}
		}
		if len(offs) > 0 {
			e.state.Offsets = offs
		}
		out = append(out, NewRow(e.key, e.state.Clone(), e.info))
	}
	clear(a.dirty)
	a.dirty = a.dirty[:0]
	sort.Slice(out, func(i, j int) bool { return lessKey(out[i].Key, out[j].Key) })
	cut := a.cut()
	for k := range a.rows {
		if k.Minute < cut {
			delete(a.rows, k)
		}
	}
	a.recent = [4]*entry{}
	return out
}

// cut is the oldest minute kept in memory.
func (a *Aggregator) cut() int64 {
	return MinuteOf(a.watermark-a.cfg.LabelTTL.Milliseconds()) - MinuteMs
}

// Restore puts rows read back from metrics.model_minute into memory, so
// new records add to them and redelivered ones are recognised. Rows older
// than the label TTL are not kept in memory.
func (a *Aggregator) Restore(rows []Row) {
	for _, r := range rows {
		if r.State == nil {
			continue
		}
		if end := r.Minute + MinuteMs - 1; end > a.watermark {
			a.watermark = end
		}
	}
	a.recent = [4]*entry{}
	cut := a.cut()
	for _, r := range rows {
		if r.State == nil || r.Minute < cut {
			continue
		}
		a.rows[r.Key] = &entry{key: r.Key, state: r.State.Clone(), info: a.catalog.Model(r.Model, r.Version)}
	}
}

// Stats returns the aggregator's counters.
func (a *Aggregator) Stats() Stats {
	s := a.stats
	s.Rows = len(a.rows)
	s.Pending = len(a.preds) + len(a.labels)
	return s
}

func lessKey(a, b Key) bool {
	if a.Minute != b.Minute {
		return a.Minute < b.Minute
	}
	if a.Model != b.Model {
		return a.Model < b.Model
	}
	if a.Version != b.Version {
		return a.Version < b.Version
	}
	return a.Variant < b.Variant
}

// LessKey orders rows by minute, then model, version and variant.
func LessKey(a, b Key) bool { return lessKey(a, b) }
