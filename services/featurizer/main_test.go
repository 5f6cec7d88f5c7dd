package featurizer_test

import (
	"testing"

	"github.com/tributary-ml/tributary/libs/testutil"
)

// TestMain fails the package when a test leaves goroutines behind (the
// service's stages, producers, consumer groups).
func TestMain(m *testing.M) { testutil.VerifyNoLeaks(m) }
