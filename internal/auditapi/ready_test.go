package auditapi

import (
	"context"
	"errors"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// TestAReplicaIsReadyOnceItsAPIListensOrCannotStart: a replica whose API
// waits for its certificate is not ready; one whose API cannot be built
// (no front proxy) is, since its controller and verifier serve.
func TestAReplicaIsReadyOnceItsAPIListensOrCannotStart(t *testing.T) {
	ctx := t.Context()
	waiting := &Lazy{ready: make(chan struct{}), build: func() (*Server, error) { t.Fatal("built before its certificate"); return nil, nil }}
	go func() { _ = waiting.Start(ctx) }()
	if waiting.Check(nil) == nil {
		t.Fatal("ready while the API waits for its certificate")
	}
	failing := &Lazy{build: func() (*Server, error) { return nil, errors.New("no front proxy") }}
	if failing.Check(nil) == nil {
		t.Fatal("ready before the API was tried")
	}
	go func() { _ = failing.Start(ctx) }()
	if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		return failing.Check(nil) == nil, nil
	}); err != nil {
		t.Fatal("not ready after the API failed to build")
	}
	if waiting.Check(nil) == nil {
		t.Fatal("ready while the API waits for its certificate")
	}
}
