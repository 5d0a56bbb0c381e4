package auditapi

import (
	"sync"

	"golang.org/x/time/rate"
)

// The reveals one actor may make: a burst of revealBurst, then one every
// two seconds. Each is a durable record, so this bounds what one user can
// add to the trail; no script that reads its key at start needs more.
const (
	revealBurst    = 20
	revealEvery    = 0.5 // per second
	maxActorLimits = 10_000
)

// actorLimits are token buckets by actor, at most maxActorLimits of them:
// past that they start again empty, which only ever lets more through.
type actorLimits struct {
	mu     sync.Mutex
	limits map[string]*rate.Limiter
}

func newActorLimits() *actorLimits { return &actorLimits{limits: map[string]*rate.Limiter{}} }

func (a *actorLimits) allow(actor string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	l, ok := a.limits[actor]
	if !ok {
		if len(a.limits) >= maxActorLimits {
			clear(a.limits)
		}
		l = rate.NewLimiter(rate.Limit(revealEvery), revealBurst)
		a.limits[actor] = l
	}
	return l.Allow()
}
