package service

import (
	"context"
	"net"
	"testing"

	"github.com/tributary-ml/tributary/libs/config"
)

// TestCloseReleasesThePorts: a service whose construction fails after New
// closes the base, and its ports are free again at once.
func TestCloseReleasesThePorts(t *testing.T) {
	b, err := New(context.Background(), "svc", config.Common{KafkaBrokers: "127.0.0.1:9092", AdminAddr: "127.0.0.1:0", GRPCAddr: "127.0.0.1:0", LogLevel: "error"}, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	addrs := []string{b.AdminAddr(), b.GRPCAddr()}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		lis, err := net.Listen("tcp", a)
		if err != nil {
			t.Fatalf("%s still bound after Close: %v", a, err)
		}
		_ = lis.Close()
	}
}
