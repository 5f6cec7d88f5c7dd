// Package alerts raises model health alerts from the rows the service
// publishes: drift of the score or of a feature above a PSI threshold, and
// p99 latency above a per-model threshold. An alert is a log line, a count
// on tributary_metrics_alerts_total, and, when configured, a webhook POST.
package alerts

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/tributary-ml/tributary/services/metrics/internal/core"
)

// Kinds of alert.
const (
	ScoreDrift   = "score_drift"
	FeatureDrift = "feature_drift"
	LatencyP99   = "latency_p99"
)

// Config sets the thresholds.
type Config struct {
	// PSI is the drift threshold (0.25: a significant shift).
	PSI float64
	// MinRequests is how many scored predictions a minute needs before its
	// drift is trusted.
	MinRequests int64
	// P99Ms is the p99 latency threshold per model; "*" applies to the
	// others. Empty: no latency alerts.
	P99Ms map[string]float64
	// Webhook receives each alert as a JSON POST when set.
	Webhook string
}

// ParseP99 parses "50" or "fraud=20,*=100" into per-model thresholds.
func ParseP99(s string) (map[string]float64, error) {
	out := map[string]float64{}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		model, val := "*", item
		if i := strings.IndexByte(item, '='); i >= 0 {
			model, val = strings.TrimSpace(item[:i]), strings.TrimSpace(item[i+1:])
		}
		v, err := strconv.ParseFloat(val, 64)
		if err != nil || v <= 0 || model == "" {
			return nil, fmt.Errorf("%q is not a positive number of milliseconds or model=milliseconds", item)
		}
		out[model] = v
	}
	return out, nil
}

// Alert is one raised alert, as the webhook receives it.
type Alert struct {
	Kind      string    `json:"kind"`
	Model     string    `json:"model"`
	Version   string    `json:"version"`
	Variant   string    `json:"variant"`
	Feature   string    `json:"feature,omitempty"`
	Minute    time.Time `json:"minute"`
	Value     float64   `json:"value"`
	Threshold float64   `json:"threshold"`
}

// Alerter checks rows. Check is called from the consumer's goroutine;
// webhooks are sent by Run so a slow receiver never delays commits.
type Alerter struct {
	cfg    Config
	log    *slog.Logger
	count  metric.Int64Counter
	client *http.Client
	queue  chan Alert

	stop     chan struct{}
	stopOnce sync.Once

	mu    sync.Mutex
	fired map[string]int64 // alert identity → last minute it fired for
	// dropped counts webhooks not sent because the queue was full.
	dropped int64
}

// New builds an alerter; meter may be nil.
func New(cfg Config, log *slog.Logger, meter metric.Meter, client *http.Client) (*Alerter, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Second}
	}
	a := &Alerter{cfg: cfg, log: log, client: client, queue: make(chan Alert, 256), fired: map[string]int64{}, stop: make(chan struct{})}
	if meter != nil {
		c, err := meter.Int64Counter("tributary_metrics_alerts",
			metric.WithDescription("model health alerts raised, by kind and model"))
		if err != nil {
			return nil, err
		}
		a.count = c
	}
	return a, nil
}

func (a *Alerter) p99Threshold(model string) (float64, bool) {
	if v, ok := a.cfg.P99Ms[model]; ok {
		return v, true
	}
	v, ok := a.cfg.P99Ms["*"]
	return v, ok
}

// Check raises the alerts rows call for. A condition alerts once per row
// minute, however often the row is re-published.
func (a *Alerter) Check(ctx context.Context, rows []core.Row) []Alert {
	var raised []Alert
	for _, r := range rows {
		for _, al := range a.conditions(r) {
			raised = a.raise(ctx, raised, al, r.Minute)
		}
	}
	return raised
}

// Seed records the alerts that rows published before a restart called for
// as already raised, without raising them: the restored rows are what the
// previous process checked, so the current minute does not alert again.
func (a *Alerter) Seed(rows []core.Row) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range rows {
		for _, al := range a.conditions(r) {
			if id := al.id(); a.fired[id] < r.Minute {
				a.fired[id] = r.Minute
			}
		}
	}
}

// conditions returns the alerts row r calls for, in a stable order.
func (a *Alerter) conditions(r core.Row) []Alert {
	var out []Alert
	base := Alert{Model: r.Model, Version: r.Version, Variant: r.Variant, Minute: time.UnixMilli(r.Minute).UTC()}
	scored := r.Requests - r.Errors
	if a.cfg.PSI > 0 && scored >= a.cfg.MinRequests {
		if r.ScorePSI > a.cfg.PSI {
			al := base
			al.Kind, al.Value, al.Threshold = ScoreDrift, r.ScorePSI, a.cfg.PSI
			out = append(out, al)
		}
		names := make([]string, 0, len(r.FeaturePSI))
		for n := range r.FeaturePSI {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			if v := r.FeaturePSI[n]; v > a.cfg.PSI {
				al := base
				al.Kind, al.Feature, al.Value, al.Threshold = FeatureDrift, n, v, a.cfg.PSI
				out = append(out, al)
			}
		}
	}
	if th, ok := a.p99Threshold(r.Model); ok && r.Requests > 0 && r.LatencyP99Ms > th {
		al := base
		al.Kind, al.Value, al.Threshold = LatencyP99, r.LatencyP99Ms, th
		out = append(out, al)
	}
	return out
}

// id is the alert's identity: one alert per identity and minute.
func (al Alert) id() string {
	return al.Kind + "|" + al.Model + "|" + al.Version + "|" + al.Variant + "|" + al.Feature
}

func (a *Alerter) raise(ctx context.Context, raised []Alert, al Alert, minute int64) []Alert {
	id := al.id()
	a.mu.Lock()
	last, ok := a.fired[id]
	if ok && last >= minute {
		a.mu.Unlock()
		return raised
	}
	a.fired[id] = minute
	a.mu.Unlock()
	a.log.Warn("model health alert", "kind", al.Kind, "model", al.Model, "version", al.Version, "variant", al.Variant,
		"feature", al.Feature, "minute", al.Minute, "value", al.Value, "threshold", al.Threshold)
	if a.count != nil {
		a.count.Add(ctx, 1, metric.WithAttributes(attribute.String("kind", al.Kind), attribute.String("model", al.Model)))
	}
	if a.cfg.Webhook != "" {
		select {
		case a.queue <- al:
		default:
			a.mu.Lock()
			a.dropped++
			a.mu.Unlock()
			a.log.Warn("alert webhook queue full, alert not sent", "kind", al.Kind, "model", al.Model)
		}
	}
	return append(raised, al)
}

// Close tells Run that no more alerts will be queued: Run sends what is
// queued and returns. Safe to call more than once.
func (a *Alerter) Close() { a.stopOnce.Do(func() { close(a.stop) }) }

// shutdownGrace bounds how long Run waits, once ctx ended, for Close (the
// consumer's last flush may still raise alerts) and then for the webhook.
const shutdownGrace = 10 * time.Second

// Run sends queued alerts to the webhook until Close, or until ctx ended
// and Close did not follow within a grace period; alerts queued by then
// are still sent.
func (a *Alerter) Run(ctx context.Context) error {
	if a.cfg.Webhook == "" {
		<-ctx.Done()
		return nil
	}
	var grace <-chan time.Time
	done := ctx.Done()
	for {
		select {
		case al := <-a.queue:
			a.deliver(ctx, al)
		case <-done:
			done = nil
			t := time.NewTimer(shutdownGrace)
			defer t.Stop()
			grace = t.C
		case <-grace:
			a.drain(ctx)
			return nil
		case <-a.stop:
			a.drain(ctx)
			return nil
		}
	}
}

func (a *Alerter) drain(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	for {
		select {
		case al := <-a.queue:
			a.deliver(ctx, al)
		default:
			return
		}
	}
}

func (a *Alerter) deliver(ctx context.Context, al Alert) {
	if ctx.Err() != nil {
		ctx = context.WithoutCancel(ctx)
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, shutdownGrace)
		defer cancel()
	}
	if err := a.send(ctx, al); err != nil {
		a.log.Warn("alert webhook", "url", a.cfg.Webhook, "err", err)
	}
}

func (a *Alerter) send(ctx context.Context, al Alert) error {
	b, err := json.Marshal(al)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.cfg.Webhook, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("webhook answered %s", resp.Status)
	}
	return nil
}
