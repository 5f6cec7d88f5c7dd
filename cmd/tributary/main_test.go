package main

import (
	"testing"

	"github.com/tributary-ml/tributary/libs/testutil"
)

// TestMain fails the package when a test leaves goroutines behind (the
// whole stack of the end-to-end test included).
func TestMain(m *testing.M) { testutil.VerifyNoLeaks(m) }
