package core

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"strings"
)

// MaskAction says what happens to a column's values before they leave the service.
type MaskAction int

// Mask actions.
const (
	MaskNone MaskAction = iota
	// MaskDrop removes the column from before, after and the key.
	MaskDrop
	// MaskHash replaces a value by the hex HMAC-SHA256 of its text form under the mask key.
	MaskHash
	// MaskRedact replaces a value by RedactedValue.
	MaskRedact
)

// RedactedValue replaces redacted values.
const RedactedValue = "****"

func (a MaskAction) String() string {
	switch a {
	case MaskDrop:
		return "drop"
	case MaskHash:
		return "hash"
	case MaskRedact:
		return "redact"
	}
	return "none"
}

// MaskRules maps "schema.table.column" to an action.
type MaskRules map[string]MaskAction

// ParseMaskRules parses rules such as "public.users.email=hash,public.users.phone=drop".
func ParseMaskRules(s string) (MaskRules, error) {
	rules := MaskRules{}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		col, action, ok := strings.Cut(item, "=")
		if !ok {
			return nil, fmt.Errorf("%q: want schema.table.column=drop|hash|redact", item)
		}
		if parts := strings.Split(col, "."); len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
			return nil, fmt.Errorf("%q: column must be schema.table.column", item)
		}
		var a MaskAction
		switch action {
		case "drop":
			a = MaskDrop
		case "hash":
			a = MaskHash
		case "redact":
			a = MaskRedact
		default:
			return nil, fmt.Errorf("%q: action %q is not one of drop, hash, redact", item, action)
		}
		rules[col] = a
	}
	return rules, nil
}

// NeedsKey reports whether any rule hashes.
func (r MaskRules) NeedsKey() bool {
	for _, a := range r {
		if a == MaskHash {
			return true
		}
	}
	return false
}

// hasher computes keyed hashes; it is not safe for concurrent use.
type hasher struct {
	mac hash.Hash
	sum []byte
}

func newHasher(key []byte) *hasher {
	return &hasher{mac: hmac.New(sha256.New, key)}
}

func (h *hasher) appendHash(dst, value []byte) []byte {
	h.mac.Reset()
	h.mac.Write(value)
	h.sum = h.mac.Sum(h.sum[:0])
	dst = append(dst, '"')
	dst = hex.AppendEncode(dst, h.sum)
	return append(dst, '"')
}
