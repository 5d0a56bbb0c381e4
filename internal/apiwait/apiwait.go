// Package apiwait makes the manager's requests wait out an API server
// outage instead of failing: a request the API server could not even
// receive (the connection was refused) is tried again every PollInterval
// until it goes through or its context ends. client-go's informers then
// resume the moment the API server is back, instead of sleeping through
// their reflector's backoff (up to 30 s after an outage of the same
// length), and the outage and the reconnection are logged once each.
package apiwait

import (
	"errors"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/utils/clock"
)

// PollInterval is how often a refused request is tried again.
const PollInterval = 250 * time.Millisecond

// Transport retries requests whose connection the API server refused. Such
// a request was never received, so trying it again is safe for every
// method.
type Transport struct {
	Next http.RoundTripper
	*Outage
}

// Outage is what the transports of one API server share: whether it is
// down, since when, and where to say so.
type Outage struct {
	Log   logr.Logger
	Clock clock.Clock

	mu   sync.Mutex
	down time.Time // when the outage began; zero while the API server answers
}

// Wrap returns a function for rest.Config.WrapTransport; the transports it
// wraps share one Outage.
func Wrap(log logr.Logger) func(http.RoundTripper) http.RoundTripper {
	o := &Outage{Log: log, Clock: clock.RealClock{}}
	return func(next http.RoundTripper) http.RoundTripper { return &Transport{Next: next, Outage: o} }
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	for {
		resp, err := t.Next.RoundTrip(req)
		if err == nil || !errors.Is(err, syscall.ECONNREFUSED) {
			if err == nil {
				t.up()
			}
			return resp, err
		}
		t.wentDown(err)
		if req.Body != nil && req.GetBody != nil {
			body, berr := req.GetBody()
			if berr != nil {
				return nil, err
			}
			req = req.Clone(req.Context())
			req.Body = body
		} else if req.Body != nil && req.Body != http.NoBody {
			return nil, err
		}
		select {
		case <-req.Context().Done():
			return nil, err
		case <-t.Clock.After(PollInterval):
		}
	}
}

func (t *Outage) wentDown(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.down.IsZero() {
		t.down = t.Clock.Now()
		t.Log.Info("the API server refuses connections; requests wait for it", "error", err.Error())
	}
}

func (t *Outage) up() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.down.IsZero() {
		t.Log.Info("reconnected to the API server", "after", t.Clock.Since(t.down).Round(time.Millisecond).String())
		t.down = time.Time{}
	}
}
