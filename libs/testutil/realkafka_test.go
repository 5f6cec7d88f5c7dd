package testutil

import (
	"slices"
	"testing"
)

func TestRealKafkaReadsTheBrokerList(t *testing.T) {
	for _, tc := range []struct {
		env  string
		want []string
	}{
		{"", nil},
		{" , ", nil},
		{"127.0.0.1:29092", []string{"127.0.0.1:29092"}},
		{"a:1, b:2,,c:3 ", []string{"a:1", "b:2", "c:3"}},
	} {
		t.Setenv(KafkaEnv, tc.env)
		if got := RealKafka(); !slices.Equal(got, tc.want) {
			t.Errorf("%s=%q: %q, want %q", KafkaEnv, tc.env, got, tc.want)
		}
	}
}
