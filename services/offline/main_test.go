package offline_test

import (
	"testing"

	"github.com/tributary-ml/tributary/libs/testutil"
)

// TestMain fails the package when a test leaves goroutines behind.
func TestMain(m *testing.M) {
	testutil.VerifyNoLeaks(m)
}
