package auditapi

import (
	"context"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// RetryStart is how long the API waits before it tries to start again
// after a failure to build.
const RetryStart = 30 * time.Second

// lazy is the API server, built once ready closes (the serving certificate
// files must exist when it is built; nil ready: at once). A server that
// cannot be built (the API server has no front proxy configured, its
// authentication ConfigMap cannot be read yet) is logged and tried again:
// the controller and the verifier run on without it.
type lazy struct {
	ready chan struct{}
	build func() (*Server, error)
}

func (l lazy) NeedLeaderElection() bool { return false }

func (l lazy) Start(ctx context.Context) error {
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
			return s.Start(ctx)
		}
		log.FromContext(ctx).Error(err, "keymint's API (audit.keymint.io) cannot start; reveals and audit records are unavailable until it does",
			"retryIn", RetryStart.String())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(RetryStart):
		}
	}
}

// Runnable serves the API with New's server, built once ready closes (nil:
// at once) and retried until it can be.
func Runnable(ready chan struct{}, o *Options, d Deps) manager.Runnable {
	return lazy{ready: ready, build: func() (*Server, error) { return New(o, d) }}
}
