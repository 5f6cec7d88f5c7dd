// Package core is the modelserver's application core: it resolves a request
// to a model version (experiments, pinned versions and variants), fetches the
// model's features from the feature store in one call, builds the feature
// vectors (defaults, transforms), scores, and hands every prediction to the
// prediction log. It does no I/O itself: the feature store and the log are
// ports implemented by adapters.
package core

import (
	"errors"
	"fmt"
)

// Kind classifies an error for the caller (mapped to gRPC codes and HTTP statuses).
type Kind int

// Error kinds.
const (
	KindInternal Kind = iota
	KindInvalidArgument
	KindNotFound
	KindUnavailable
	KindResourceExhausted
	KindDeadlineExceeded
	KindCanceled
)

// Error is an error with a kind.
type Error struct {
	Kind Kind
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

func errorf(k Kind, format string, args ...any) error {
	return &Error{Kind: k, Msg: fmt.Sprintf(format, args...)}
}

// KindOf returns err's kind (KindInternal for errors without one).
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindInternal
}

// InvalidArgument builds an InvalidArgument error; handlers use it for decoding errors.
func InvalidArgument(format string, args ...any) error {
	return errorf(KindInvalidArgument, format, args...)
}

// NotFound builds a NotFound error.
func NotFound(format string, args ...any) error { return errorf(KindNotFound, format, args...) }

// Unavailable builds an Unavailable error.
func Unavailable(format string, args ...any) error { return errorf(KindUnavailable, format, args...) }
