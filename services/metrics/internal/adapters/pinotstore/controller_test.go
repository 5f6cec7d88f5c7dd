package pinotstore

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestTableCheck(t *testing.T) {
	tables := map[string]string{"model_minute": `{"REALTIME":{"tableName":"model_minute_REALTIME"}}`, "empty": `{}`}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/tables/")
		body, ok := tables[name]
		if !ok {
			http.Error(w, `{"code":404,"error":"Table not found"}`, http.StatusNotFound)
			return
		}
		_, _ = w.Write([]byte(body))
	}))
	defer srv.Close()
	tests := []struct {
		name, controller, table, wantErr string
	}{
		{"exists", srv.URL, "model_minute", ""},
		{"missing", srv.URL, "nope", "does not exist"},
		{"no realtime table", srv.URL, "empty", "no REALTIME table"},
		{"unreachable", "http://127.0.0.1:1", "model_minute", "unreachable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := TableCheck{Controller: tt.controller, Table: tt.table}.Check(context.Background())
			if tt.wantErr == "" && err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}
