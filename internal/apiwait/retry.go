package apiwait

import (
	"context"
	"errors"
	"io"
	"net"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	utilnet "k8s.io/apimachinery/pkg/util/net"
)

// Transient reports whether err says only that the API server is away or
// overloaded for now: the request did not get through (a refused or reset
// connection, a timeout) or was answered 429 or 5xx. Any other answer is
// the API server's word, and final.
func Transient(err error) bool {
	var netErr net.Error
	switch {
	case err == nil:
		return false
	case utilnet.IsConnectionRefused(err), utilnet.IsConnectionReset(err), utilnet.IsProbableEOF(err),
		errors.Is(err, io.ErrUnexpectedEOF), errors.As(err, &netErr):
		return true
	case apierrors.IsTooManyRequests(err), apierrors.IsServerTimeout(err), apierrors.IsTimeout(err),
		apierrors.IsServiceUnavailable(err), apierrors.IsInternalError(err):
		return true
	}
	return false
}

// Retry calls f, the first time at once and then every second, until it
// returns nil or an error that is not Transient, or ctx ends. The manager's
// start-up calls use it, so that a manager started during an API server
// outage waits it out instead of exiting.
func Retry(ctx context.Context, log logr.Logger, what string, f func() error) error {
	for {
		err := f()
		if !Transient(err) || ctx.Err() != nil {
			return err
		}
		log.Info("the API server is away; trying again", "step", what, "error", err.Error())
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Second):
		}
	}
}
