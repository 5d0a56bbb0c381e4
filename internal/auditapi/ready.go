package auditapi

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"time"

	genericapiserver "k8s.io/apiserver/pkg/server"
	"sigs.k8s.io/controller-runtime/pkg/log"
)

// RetryStart is how long the API waits before it tries to start again
// after a failure to build.
const RetryStart = 30 * time.Second

// Lazy is the API server, built once ready closes (the serving certificate
// files must exist when it is built; nil ready: at once). A server that
// cannot be built (the API server has no front proxy configured, its
// authentication ConfigMap cannot be read yet) is logged and tried again:
// the controller and the verifier run on without it.
type Lazy struct {
	ready chan struct{}
	build func() (*Server, error)
	// settled is set once the API listens, or once it failed to build:
	// until then a replica is not ready, so that the Service sends the
	// aggregator's requests only to replicas that answer them.
	settled atomic.Bool
}

// NeedLeaderElection: every replica serves the API.
func (l *Lazy) NeedLeaderElection() bool { return false }

// Start builds and serves the API until ctx ends.
func (l *Lazy) Start(ctx context.Context) error {
	if l.ready != nil {
		select {
		case <-ctx.Done():
			return nil
		case <-l.ready:
		}
	}
	for {
		s, err := l.build()
		if err == nil {
			s.api.AddPostStartHookOrDie("keymint-listening", func(genericapiserver.PostStartHookContext) error {
				l.settled.Store(true)
				return nil
			})
			return s.Start(ctx)
		}
		l.settled.Store(true)
		log.FromContext(ctx).Error(err, "keymint's API (audit.keymint.io) cannot start; reveals and audit records are unavailable until it does",
			"retryIn", RetryStart.String())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(RetryStart):
		}
	}
}

// Check is a readiness check: an error until the API listens or has
// failed to build.
func (l *Lazy) Check(*http.Request) error {
	if !l.settled.Load() {
		return errors.New("keymint's API is starting")
	}
	return nil
}

// Runnable serves the API with New's server, built once ready closes (nil:
// at once) and retried until it can be.
func Runnable(ready chan struct{}, o *Options, d Deps) *Lazy {
	return &Lazy{ready: ready, build: func() (*Server, error) { return New(o, d) }}
}
