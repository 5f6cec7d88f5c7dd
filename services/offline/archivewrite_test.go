package offline_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tributary-ml/tributary/libs/aggregate"
	"github.com/tributary-ml/tributary/libs/featurespec"
	"github.com/tributary-ml/tributary/libs/kafka"
	"github.com/tributary-ml/tributary/services/offline"
)

func TestWriteArchive(t *testing.T) {
	ctx := context.Background()
	views, err := featurespec.LoadDir(featuresDir)
	if err != nil {
		t.Fatal(err)
	}
	url := "file://" + t.TempDir() + "/new"
	at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	txn := `{"before":null,"after":{"txn_id":1,"user_id":"u1","merchant_id":"m1","amount":"12.50","created_at":"2026-11-01T00:00:02.5Z"},` +
		`"source":{"sequence":"[\"200\",\"100\"]","lsn":100},"op":"c","ts_ms":1793491202500}`
	msgs := []kafka.Message{
		{Topic: "events.clicks", Partition: 1, Offset: 7, Key: []byte("u1"), Value: []byte(`{"user_id":"u1","ts_ms":1793491200000}`), Time: at},
		{Topic: "cdc.public.transactions", Offset: 0, Value: []byte(txn), Time: at.Add(2500 * time.Millisecond)},
		{Topic: "events.clicks", Partition: 1, Offset: 8, Key: []byte("u1"), Value: []byte(`{"user_id":"u1","ts_ms":1793491201000}`), Time: at.Add(time.Second)},
	}
	if err := offline.WriteArchive(ctx, url, views, msgs); err != nil {
		t.Fatal(err)
	}
	clicks := scanRows(t, url, "events.clicks")
	if len(clicks) != 2 || clicks[0].Partition != 1 || clicks[0].Offset != 7 || clicks[1].Offset != 8 ||
		clicks[1].ArrivalMs != at.UnixMilli()+1000 || clicks[1].EventMs != 1793491201000 || string(clicks[0].Key) != "u1" {
		t.Fatalf("clicks archived as %+v", clicks)
	}
	txns := scanRows(t, url, "cdc.public.transactions")
	if len(txns) != 1 || txns[0].Op != "c" || txns[0].LSN != 100 || txns[0].EventMs != at.UnixMilli()+2500 || !strings.Contains(txns[0].After, `"amount":"12.50"`) {
		t.Fatalf("transaction archived as %+v", txns)
	}

	h, closeH, err := offline.OpenArchiveHistory(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = closeH() }()
	var got []aggregate.Record
	if err := h.Scan(ctx, "events.clicks", func(r aggregate.Record) error {
		r.Value = nil // not kept past the call
		got = append(got, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Topic != "events.clicks" || got[0].Partition != 1 || got[0].Offset != 7 || got[0].TimeMs != at.UnixMilli() {
		t.Fatalf("history of events.clicks: %+v", got)
	}

	// A partition out of offset order is refused, naming it.
	bad := []kafka.Message{msgs[2], msgs[0]}
	if err := offline.WriteArchive(ctx, "file://"+t.TempDir(), views, bad); err == nil || !strings.Contains(err.Error(), "events.clicks/1") {
		t.Fatalf("records out of offset order: err %v", err)
	}
	if _, _, err := offline.OpenArchiveHistory(ctx, "file:///does/not/exist"); err == nil {
		t.Fatal("opening a missing archive: no error")
	}
}
