package jsonenc

import (
	"bytes"
	"encoding/json"
	"testing"
)

func TestAppendStringLikeEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", "q\"b\\", "\n\r\t\b\f\x00\x1f", "<a&b>", "é€😀", "\u2028\u2029", "bad\xffutf8"} {
		want, _ := json.Marshal(s) // HTML-escaping, like html=true
		if got := AppendString(nil, s, true); !bytes.Equal(got, want) {
			t.Errorf("AppendString(%q, html) = %s, want %s", s, got, want)
		}
		var back string
		if err := json.Unmarshal(AppendBytes(nil, []byte(s), false), &back); err != nil {
			t.Errorf("AppendBytes(%q) is not JSON: %v", s, err)
		}
	}
	if got := string(AppendString([]byte("x"), "<&>", false)); got != `x"<&>"` {
		t.Errorf("without html: %s", got)
	}
}

func FuzzAppendString(f *testing.F) {
	f.Add("a<b>\"\\\n\x00\xff\u2028")
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		if err != nil {
			t.Skip()
		}
		if got := AppendString(nil, s, true); !bytes.Equal(got, want) {
			t.Fatalf("AppendString(%q) = %s, encoding/json %s", s, got, want)
		}
		var a, b string
		if err := json.Unmarshal(want, &a); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(AppendString(nil, s, false), &b); err != nil || a != b {
			t.Fatalf("without html: %q, %v; want %q", b, err, a)
		}
	})
}
