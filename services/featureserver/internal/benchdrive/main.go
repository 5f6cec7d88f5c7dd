// Command benchdrive is the load generator of the featureserver benchmark
// (bench/featureserver/run.sh): it calls GetOnlineFeatures, or the gRPC
// health check as the no-op to compare with, in open loop at a fixed rate
// and prints the calls' latency percentiles and the achieved rate as one
// JSON object.
//
// It exists because ghz decodes every response into dynamic messages
// (about 17 ms of client CPU for a 100 × 50 answer, 150 µs for a 1 × 50
// one), so on the one core the benchmark gives the load generator ghz
// cannot reach 5k requests/s of 1 × 50 or 100/s of 100 × 50 and its own
// queueing shows up as server latency. This client decodes responses with
// the generated code, as a Go caller of the feature server does.
//
// Open loop: calls start on schedule whatever earlier calls are doing, so a
// slow server shows up as latency, not as a lower rate. Calls are started
// in batches on a 1 ms tick; a call's latency runs from its actual start
// to its decoded answer.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	featuresv1 "github.com/tributary-ml/tributary/proto/gen/go/tributary/features/v1"
)

type options struct {
	addr        string
	call        string
	data        string
	rate        int
	duration    time.Duration
	timeout     time.Duration
	maxInFlight int
}

// Report is the printed result.
type Report struct {
	Call     string         `json:"call"`
	Rate     int            `json:"rate"`
	Count    int            `json:"count"`
	OK       int            `json:"ok"`
	Codes    map[string]int `json:"codes"`
	Skipped  int            `json:"skipped"`
	Elapsed  float64        `json:"elapsed_s"`
	OKRate   float64        `json:"ok_per_s"`
	P50Ms    float64        `json:"p50_ms"`
	P99Ms    float64        `json:"p99_ms"`
	P999Ms   float64        `json:"p999_ms"`
	MaxMs    float64        `json:"max_ms"`
	FirstErr string         `json:"first_error,omitempty"`
}

func main() {
	var o options
	fs := flag.NewFlagSet("benchdrive", flag.ExitOnError)
	fs.StringVar(&o.addr, "addr", "127.0.0.1:9101", "featureserver gRPC address")
	fs.StringVar(&o.call, "call", "features", "features (GetOnlineFeatures) or noop (grpc.health.v1.Health/Check)")
	fs.StringVar(&o.data, "data", "", "JSON array of GetOnlineFeatures requests, sent round-robin (call=features)")
	fs.IntVar(&o.rate, "rate", 1000, "calls per second")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "how long calls are started")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Second, "deadline of one call")
	fs.IntVar(&o.maxInFlight, "max-in-flight", 20000, "calls outstanding at once; a call due beyond it is skipped and counted")
	_ = fs.Parse(os.Args[1:])
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchdrive: %v\n", err)
		os.Exit(1)
	}
	if err := json.NewEncoder(os.Stdout).Encode(rep); err != nil {
		fmt.Fprintf(os.Stderr, "benchdrive: %v\n", err)
		os.Exit(1)
	}
}

func loadRequests(path string) ([]*featuresv1.GetOnlineFeaturesRequest, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(b, &raws); err != nil {
		return nil, fmt.Errorf("data: %s is not a JSON array: %w", path, err)
	}
	if len(raws) == 0 {
		return nil, fmt.Errorf("data: %s holds no request", path)
	}
	reqs := make([]*featuresv1.GetOnlineFeaturesRequest, len(raws))
	for i, r := range raws {
		reqs[i] = &featuresv1.GetOnlineFeaturesRequest{}
		if err := protojson.Unmarshal(r, reqs[i]); err != nil {
			return nil, fmt.Errorf("data: request %d: %w", i, err)
		}
	}
	return reqs, nil
}

func run(ctx context.Context, o options) (*Report, error) {
	if o.rate < 1 || o.duration <= 0 {
		return nil, fmt.Errorf("rate: %d and duration: %s, want both positive", o.rate, o.duration)
	}
	var call func(ctx context.Context, i int) error
	conn, err := grpc.NewClient(o.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	switch o.call {
	case "features":
		reqs, err := loadRequests(o.data)
		if err != nil {
			return nil, err
		}
		client := featuresv1.NewFeatureServiceClient(conn)
		call = func(ctx context.Context, i int) error {
			req := reqs[i%len(reqs)]
			resp, err := client.GetOnlineFeatures(ctx, req)
			if err == nil && len(resp.GetResults()) != len(req.GetEntities()) {
				err = fmt.Errorf("%d result rows for %d entities", len(resp.GetResults()), len(req.GetEntities()))
			}
			return err
		}
	case "noop":
		client := healthpb.NewHealthClient(conn)
		req := &healthpb.HealthCheckRequest{}
		call = func(ctx context.Context, _ int) error {
			_, err := client.Check(ctx, req)
			return err
		}
	default:
		return nil, fmt.Errorf("call: %q is not features or noop", o.call)
	}
	// One call before the clock starts: the connection is up.
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = call(wctx, 0)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("first call: %w", err)
	}

	total := int(o.duration.Seconds() * float64(o.rate))
	lat := make([]time.Duration, total)
	errs := make([]error, total)
	done := make([]bool, total)
	sem := make(chan struct{}, o.maxInFlight)
	var wg sync.WaitGroup
	interval := time.Second / time.Duration(o.rate)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	skipped := 0
	for next := 0; next < total; {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		}
		due := min(total, int(time.Since(start)/interval)+1)
		for ; next < due; next++ {
			select {
			case sem <- struct{}{}:
			default:
				skipped++
				continue
			}
			i := next
			wg.Go(func() {
				defer func() { <-sem }()
				cctx, cancel := context.WithTimeout(ctx, o.timeout)
				defer cancel()
				t0 := time.Now()
				errs[i] = call(cctx, i)
				lat[i] = time.Since(t0)
				done[i] = true
			})
		}
	}
	wg.Wait()
	elapsed := time.Since(start)

	rep := &Report{Call: o.call, Rate: o.rate, Codes: map[string]int{}, Skipped: skipped, Elapsed: elapsed.Seconds()}
	var okLat []time.Duration
	for i := range total {
		if !done[i] {
			continue
		}
		rep.Count++
		if errs[i] == nil {
			rep.OK++
			okLat = append(okLat, lat[i])
			continue
		}
		code := "client"
		if st, ok := status.FromError(errs[i]); ok {
			code = st.Code().String()
		}
		rep.Codes[code]++
		if rep.FirstErr == "" {
			rep.FirstErr = errs[i].Error()
		}
	}
	if len(okLat) == 0 {
		return nil, errors.New("no call succeeded: " + rep.FirstErr)
	}
	slices.Sort(okLat)
	q := func(p float64) float64 {
		return float64(okLat[min(len(okLat)-1, int(p*float64(len(okLat))))].Nanoseconds()) / 1e6
	}
	rep.P50Ms, rep.P99Ms, rep.P999Ms = q(0.50), q(0.99), q(0.999)
	rep.MaxMs = float64(okLat[len(okLat)-1].Nanoseconds()) / 1e6
	rep.OKRate = float64(rep.OK) / elapsed.Seconds()
	return rep, nil
}
