// Package featureclient is the adapter to the featureserver's
// tributary.features.v1.FeatureService over gRPC.
package featureclient

import (
	"context"
	"fmt"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	featuresv1 "github.com/tributary-ml/tributary/proto/gen/go/tributary/features/v1"

	"github.com/tributary-ml/tributary/libs/service"
	"github.com/tributary-ml/tributary/services/modelserver/internal/core"
	"github.com/tributary-ml/tributary/services/modelserver/internal/model"
)

var _ core.FeatureStore = (*Client)(nil)

// viewsRefresh bounds how often an unknown view makes the client list the views again.
const viewsRefresh = 5 * time.Second

// Client talks to a featureserver.
type Client struct {
	conn *grpc.ClientConn
	fs   featuresv1.FeatureServiceClient
	prop propagation.TextMapPropagator

	mu       sync.RWMutex // guards views and listedAt
	views    map[string][]string
	listedAt time.Time
	listing  sync.Mutex // held by the one request that lists the views
}

// Dial connects lazily to the featureserver at addr.
func Dial(addr string, prop propagation.TextMapPropagator) (*Client, error) {
	if prop == nil {
		prop = propagation.TraceContext{}
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("featureserver-addr: %w", err)
	}
	// Connect now, so the first request's feature fetch does not pay for the
	// TCP and HTTP/2 handshakes inside its deadline.
	conn.Connect()
	return &Client{conn: conn, fs: featuresv1.NewFeatureServiceClient(conn), prop: prop, views: map[string][]string{}}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// GetOnlineFeatures implements core.FeatureStore with one GetOnlineFeatures call.
func (c *Client) GetOnlineFeatures(ctx context.Context, refs []string, rows []map[string]string) ([][]core.Fetched, error) {
	req := &featuresv1.GetOnlineFeaturesRequest{Features: refs, Entities: make([]*featuresv1.EntityRow, len(rows))}
	for i, r := range rows {
		req.Entities[i] = &featuresv1.EntityRow{JoinKeys: r}
	}
	resp, err := c.fs.GetOnlineFeatures(service.InjectOutgoing(ctx, c.prop), req)
	if status.Code(err) == codes.DeadlineExceeded {
		// The core tells timeouts apart with errors.Is.
		return nil, fmt.Errorf("get online features: %w: %w", context.DeadlineExceeded, err)
	}
	if err != nil {
		return nil, fmt.Errorf("get online features: %w", err)
	}
	if got := resp.GetFeatures(); len(got) != 0 && !slices.Equal(got, refs) {
		return nil, fmt.Errorf("get online features: answer is for features %v, asked %v", got, refs)
	}
	out := make([][]core.Fetched, len(resp.GetResults()))
	for i, vec := range resp.GetResults() {
		vals := vec.GetValues()
		row := make([]core.Fetched, len(vals))
		for j, fv := range vals {
			row[j] = convert(fv)
		}
		out[i] = row
	}
	return out, nil
}

// convert maps a FeatureValue; only PRESENT values with a value count.
func convert(fv *featuresv1.FeatureValue) core.Fetched {
	if fv.GetStatus() != featuresv1.FeatureStatus_FEATURE_STATUS_PRESENT || fv.GetValue() == nil {
		return core.Fetched{}
	}
	switch k := fv.GetValue().GetKind().(type) {
	case *featuresv1.Value_DoubleValue:
		return core.Fetched{Value: model.Num(k.DoubleValue), Present: true}
	case *featuresv1.Value_Int64Value:
		return core.Fetched{Value: model.Num(float64(k.Int64Value)), Present: true}
	case *featuresv1.Value_BoolValue:
		v := 0.0
		if k.BoolValue {
			v = 1
		}
		return core.Fetched{Value: model.Num(v), Present: true}
	case *featuresv1.Value_StringValue:
		return core.Fetched{Value: model.Str(k.StringValue), Present: true}
	}
	return core.Fetched{}
}

// JoinKeys implements core.FeatureStore from ListFeatureViews, cached; an
// unknown view lists the views again at most every viewsRefresh, by one
// request while the others go on without join keys.
func (c *Client) JoinKeys(ctx context.Context, views []string) (map[string][]string, error) {
	c.mu.RLock()
	out, ok := c.lookup(views)
	recent := time.Since(c.listedAt) < viewsRefresh
	c.mu.RUnlock()
	if ok {
		return out, nil
	}
	if recent || !c.listing.TryLock() {
		return nil, fmt.Errorf("feature views %v: not known to the featureserver (yet)", views)
	}
	defer c.listing.Unlock()
	lctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	resp, err := c.fs.ListFeatureViews(service.InjectOutgoing(lctx, c.prop), &featuresv1.ListFeatureViewsRequest{})
	c.mu.Lock()
	defer c.mu.Unlock()
	c.listedAt = time.Now()
	if err != nil {
		return nil, fmt.Errorf("list feature views: %w", err)
	}
	for _, v := range resp.GetViews() {
		c.views[v.GetName()] = v.GetJoinKeys()
	}
	if out, ok := c.lookup(views); ok {
		return out, nil
	}
	return nil, fmt.Errorf("feature views %v: not all known to the featureserver", views)
}

func (c *Client) lookup(views []string) (map[string][]string, bool) {
	out := make(map[string][]string, len(views))
	for _, v := range views {
		keys, ok := c.views[v]
		if !ok {
			return nil, false
		}
		out[v] = keys
	}
	return out, true
}
