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
// Open loop (--rate): calls start on schedule whatever earlier calls are
// doing, so a slow server shows up as latency, not as a lower rate. Calls
// are started in batches on a 1 ms tick; a call's latency runs from its
// actual start to its decoded answer. Closed loop (--concurrency): that
// many callers each start the next call when the last one is answered,
// which measures the most calls per second the server (or this client,
// see client_cpu_us) manages; --decode shape then keeps the client's own
// work small by counting rows and values on the wire instead of building
// messages.
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
	concurrency int
	decode      string
	duration    time.Duration
	timeout     time.Duration
	maxInFlight int
}

// Report is the printed result.
type Report struct {
	Call string `json:"call"`
	// Mode is "open" (calls start at Rate per second) or "closed"
	// (Concurrency callers, each starting its next call when the last
	// one is answered: the most the server and this client manage).
	Mode        string         `json:"mode"`
	Rate        int            `json:"rate"`
	Concurrency int            `json:"concurrency,omitempty"`
	Decode      string         `json:"decode"`
	Count       int            `json:"count"`
	OK          int            `json:"ok"`
	Codes       map[string]int `json:"codes"`
	Skipped     int            `json:"skipped"`
	Elapsed     float64        `json:"elapsed_s"`
	OKRate      float64        `json:"ok_per_s"`
	P50Ms       float64        `json:"p50_ms"`
	P99Ms       float64        `json:"p99_ms"`
	P999Ms      float64        `json:"p999_ms"`
	MaxMs       float64        `json:"max_ms"`
	// ClientCPUUs is this process's CPU time (user + system) per call: at
	// 1e6 / ClientCPUUs calls per second the load generator's core is full.
	ClientCPUUs float64 `json:"client_cpu_us"`
	FirstErr    string  `json:"first_error,omitempty"`
}

func main() {
	var o options
	fs := flag.NewFlagSet("benchdrive", flag.ExitOnError)
	fs.StringVar(&o.addr, "addr", "127.0.0.1:9101", "featureserver gRPC address")
	fs.StringVar(&o.call, "call", "features", "features (GetOnlineFeatures) or noop (grpc.health.v1.Health/Check)")
	fs.StringVar(&o.data, "data", "", "JSON array of GetOnlineFeatures requests, sent round-robin (call=features)")
	fs.IntVar(&o.rate, "rate", 1000, "calls per second (open loop)")
	fs.IntVar(&o.concurrency, "concurrency", 0, "closed loop with this many callers instead of a rate: each starts its next call when its last is answered")
	fs.StringVar(&o.decode, "decode", "messages", "how answers are read (call=features): messages (the generated code, as a Go caller does) or shape (rows and values per row counted on the wire, no messages built: little client CPU, to measure the server's maximum)")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "how long calls are started")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Second, "deadline of one call")
	fs.IntVar(&o.maxInFlight, "max-in-flight", 20000, "calls outstanding at once (open loop); a call due beyond it is skipped and counted")
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

// outcome is one finished call.
type outcome struct {
	lat time.Duration
	err error
}

func run(ctx context.Context, o options) (*Report, error) {
	closed := o.concurrency > 0
	switch {
	case o.duration <= 0:
		return nil, fmt.Errorf("duration: %s, want a positive duration", o.duration)
	case !closed && o.rate < 1:
		return nil, fmt.Errorf("rate: %d, want a positive rate (or a concurrency for a closed loop)", o.rate)
	case o.decode != "messages" && o.decode != "shape":
		return nil, fmt.Errorf("decode: %q is not messages or shape", o.decode)
	}
	conn, err := grpc.NewClient(o.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	call, err := caller(conn, o)
	if err != nil {
		return nil, err
	}
	// One call before the clock starts: the connection is up.
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = call(wctx, 0)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("first call: %w", err)
	}

	rep := &Report{Call: o.call, Mode: "open", Rate: o.rate, Decode: o.decode, Codes: map[string]int{}}
	if o.call == "noop" {
		rep.Decode = ""
	}
	cpu0 := cpuTime()
	var outs []outcome
	var elapsed time.Duration
	if closed {
		rep.Mode, rep.Rate, rep.Concurrency = "closed", 0, o.concurrency
		outs, elapsed, err = closedLoop(ctx, o, call)
	} else {
		outs, rep.Skipped, elapsed, err = openLoop(ctx, o, call)
	}
	if err != nil {
		return nil, err
	}
	rep.Elapsed = elapsed.Seconds()
	var okLat []time.Duration
	for _, out := range outs {
		rep.Count++
		if out.err == nil {
			rep.OK++
			okLat = append(okLat, out.lat)
			continue
		}
		code := "client"
		if st, ok := status.FromError(out.err); ok {
			code = st.Code().String()
		}
		rep.Codes[code]++
		if rep.FirstErr == "" {
			rep.FirstErr = out.err.Error()
		}
	}
	if len(okLat) == 0 {
		return nil, errors.New("no call succeeded: " + rep.FirstErr)
	}
	rep.ClientCPUUs = float64((cpuTime() - cpu0).Microseconds()) / float64(rep.Count)
	slices.Sort(okLat)
	q := func(p float64) float64 {
		return float64(okLat[min(len(okLat)-1, int(p*float64(len(okLat))))].Nanoseconds()) / 1e6
	}
	rep.P50Ms, rep.P99Ms, rep.P999Ms = q(0.50), q(0.99), q(0.999)
	rep.MaxMs = float64(okLat[len(okLat)-1].Nanoseconds()) / 1e6
	rep.OKRate = float64(rep.OK) / elapsed.Seconds()
	return rep, nil
}

// caller returns the call to make: i picks the request.
func caller(conn *grpc.ClientConn, o options) (func(ctx context.Context, i int) error, error) {
	switch o.call {
	case "features":
		reqs, err := loadRequests(o.data)
		if err != nil {
			return nil, err
		}
		if o.decode == "shape" {
			return shapeCaller(conn, reqs)
		}
		client := featuresv1.NewFeatureServiceClient(conn)
		return func(ctx context.Context, i int) error {
			req := reqs[i%len(reqs)]
			resp, err := client.GetOnlineFeatures(ctx, req)
			if err != nil {
				return err
			}
			if len(resp.GetResults()) != len(req.GetEntities()) {
				return fmt.Errorf("%d result rows for %d entities", len(resp.GetResults()), len(req.GetEntities()))
			}
			for _, vec := range resp.GetResults() {
				if len(vec.GetValues()) != len(req.GetFeatures()) {
					return fmt.Errorf("%d values in a row for %d features", len(vec.GetValues()), len(req.GetFeatures()))
				}
			}
			return nil
		}, nil
	case "noop":
		client := healthpb.NewHealthClient(conn)
		req := &healthpb.HealthCheckRequest{}
		return func(ctx context.Context, _ int) error {
			_, err := client.Check(ctx, req)
			return err
		}, nil
	default:
		return nil, fmt.Errorf("call: %q is not features or noop", o.call)
	}
}

// openLoop starts calls on schedule, in batches on a 1 ms tick, whatever
// earlier calls are doing; a call's latency runs from its actual start to
// its answer.
func openLoop(ctx context.Context, o options, call func(context.Context, int) error) ([]outcome, int, time.Duration, error) {
	total := int(o.duration.Seconds() * float64(o.rate))
	outs := make([]outcome, total)
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
			wg.Wait()
			return nil, 0, 0, ctx.Err()
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
				err := call(cctx, i)
				outs[i] = outcome{lat: time.Since(t0), err: err}
				done[i] = true
			})
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	kept := outs[:0]
	for i := range outs {
		if done[i] {
			kept = append(kept, outs[i])
		}
	}
	return kept, skipped, elapsed, nil
}

// closedLoop runs o.concurrency callers back to back for o.duration.
func closedLoop(ctx context.Context, o options, call func(context.Context, int) error) ([]outcome, time.Duration, error) {
	per := make([][]outcome, o.concurrency)
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(o.duration)
	for w := range per {
		wg.Go(func() {
			for i := w; time.Now().Before(end) && ctx.Err() == nil; i += o.concurrency {
				cctx, cancel := context.WithTimeout(ctx, o.timeout)
				t0 := time.Now()
				err := call(cctx, i)
				per[w] = append(per[w], outcome{lat: time.Since(t0), err: err})
				cancel()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	return slices.Concat(per...), elapsed, nil
}

// cpuTime is the CPU time (user + system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
