package pinotstore

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// TableCheck asks the Pinot controller whether the REALTIME table the rows
// land in exists, for the service's readiness: without it Pinot stores
// nothing and every query fails.
type TableCheck struct {
	Controller string
	Table      string
	Client     *http.Client
}

// Check returns nil when the controller knows the table.
func (c TableCheck) Check(ctx context.Context) error {
	client := c.Client
	if client == nil {
		client = &http.Client{Timeout: 2 * time.Second}
	}
	u := strings.TrimRight(c.Controller, "/") + "/tables/" + url.PathEscape(c.Table)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("pinot-controller %s: %w", c.Controller, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("pinot controller unreachable: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("pinot table %s does not exist on %s: create it from deploy/pinot (schema, then REALTIME table)", c.Table, c.Controller)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("pinot controller %s answered %s: %s", u, resp.Status, strings.TrimSpace(string(body)))
	case !strings.Contains(string(body), "REALTIME"):
		// The controller answers 200 with {} for an unknown table on some versions.
		return fmt.Errorf("pinot table %s on %s has no REALTIME table: create it from deploy/pinot", c.Table, c.Controller)
	}
	return nil
}
