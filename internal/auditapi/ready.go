package auditapi

import (
	"context"

	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// afterReady is the API server, built once ready closes: the serving
// certificate files must exist when it is built.
type afterReady struct {
	ready chan struct{}
	build func() (*Server, error)
}

func (a afterReady) NeedLeaderElection() bool { return false }

func (a afterReady) Start(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case <-a.ready:
	}
	s, err := a.build()
	if err != nil {
		return err
	}
	return s.Start(ctx)
}

// WhenReady returns a runnable that builds the server with New once ready
// closes, and serves.
func WhenReady(ready chan struct{}, o *Options, d Deps) manager.Runnable {
	return afterReady{ready: ready, build: func() (*Server, error) { return New(o, d) }}
}
