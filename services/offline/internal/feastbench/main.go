// Command feastbench computes the latest-value training set of
// bench/offline/feast_compare.sh with the point-in-time engine: source
// rows and spine from Parquet files, event-time semantics (every row with
// event time <= the spine row's instant counts, as Feast's point-in-time
// join), output as Parquet. It prints the time taken as JSON.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"strconv"
	"time"

	"github.com/tributary-ml/tributary/libs/aggregate"
	"github.com/tributary-ml/tributary/libs/featurespec"
	"github.com/tributary-ml/tributary/services/offline/internal/pointintime"
	"github.com/tributary-ml/tributary/services/offline/internal/spine"
)

const view = `name: txn
entity: {name: user, join_keys: [user_id]}
source: {topic: events.txn, format: json, event_time: ts}
features:
  - {name: amount, column: amount, aggregation: latest}
  - {name: merchant, column: merchant, aggregation: latest}
  - {name: score, column: score, aggregation: latest}
`

func main() {
	events := flag.String("events", "", "source rows (Parquet: user_id, event_timestamp, amount, merchant, score)")
	spinePath := flag.String("spine", "", "spine (Parquet or CSV: user_id, event_timestamp)")
	out := flag.String("out", "", "training set to write (.parquet or .csv)")
	profile := flag.String("cpuprofile", "", "write a CPU profile here")
	flag.Parse()
	if *profile != "" {
		f, err := os.Create(*profile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "feastbench:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if err := run(*events, *spinePath, *out); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "feastbench:", err)
		os.Exit(1)
	}
}

func run(events, spinePath, out string) error {
	v, err := featurespec.Parse("txn.yaml", []byte(view))
	if err != nil {
		return err
	}
	start := time.Now()
	src, err := spine.Read(events)
	if err != nil {
		return err
	}
	cols := map[string]int{}
	for _, c := range []string{"user_id", "amount", "merchant", "score"} {
		i, ok := src.Column(c)
		if !ok {
			return fmt.Errorf("%s: no column %q", events, c)
		}
		cols[c] = i
	}
	nc := len(src.Columns)
	recs := make(pointintime.Records, src.Len())
	for i := range recs {
		cell := func(c string) string { return src.Cells[i*nc+cols[c]] }
		b := []byte(`{"user_id":`)
		b = strconv.AppendQuote(b, cell("user_id"))
		b = append(b, `,"ts":`...)
		b = strconv.AppendInt(b, src.Events[i], 10)
		b = append(b, `,"amount":`...)
		b = append(b, cell("amount")...)
		b = append(b, `,"merchant":`...)
		b = strconv.AppendQuote(b, cell("merchant"))
		b = append(b, `,"score":`...)
		b = append(b, cell("score")...)
		b = append(b, '}')
		recs[i] = aggregate.Record{Topic: "events.txn", Offset: int64(i), TimeMs: src.Events[i], Value: b}
	}
	sp, err := spine.Read(spinePath)
	if err != nil {
		return err
	}
	read := time.Since(start)
	set, err := pointintime.Compute(context.Background(), pointintime.Request{
		Views: []*featurespec.View{v}, Refs: []string{"txn:*"}, Spine: sp, History: recs, EventTimeOnly: true,
	})
	if err != nil {
		return err
	}
	computed := time.Since(start)
	if err := spine.Write(out, sp, set); err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]any{
		"read_s": read.Seconds(), "compute_s": (computed - read).Seconds(), "total_s": time.Since(start).Seconds(),
		"rows": sp.Len(), "records": len(recs), "invalid": set.Stats.Invalid,
	})
}
