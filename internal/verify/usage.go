package verify

import (
	"context"
	"strconv"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/audit"
)

// DefaultLastUsedInterval is --last-used-interval's default.
const DefaultLastUsedInterval = time.Hour

// Usage writes what the verifier saw, off the request path: status.lastUsedAt
// and a Used record at most once per key per Interval, whichever replica
// served the check, and a RejectedUse record as often for an expired or
// suspended key presented. What it holds is bounded by the keys that exist:
// a key nobody holds costs nothing, however often it is presented.
type Usage struct {
	// Client writes status.lastUsedAt; Live re-reads a key whose write
	// conflicted.
	Client   client.Client
	Live     client.Reader
	Audit    audit.Writer
	Clock    clock.PassiveClock
	Interval time.Duration

	mu sync.Mutex
	// pending are the uses to write, one per key and kind.
	pending map[useKey]use
	// done are when each key's use was last written here.
	done map[useKey]time.Time
	kick chan struct{}
}

type useKey struct {
	uid      types.UID
	action   audit.Action
	previous bool
}

type use struct {
	key   types.NamespacedName
	uid   types.UID
	user  string
	keyID string
	// previous: the use is of the APIKey's previous key.
	previous bool
	action   audit.Action
	reason   Reason
	at       time.Time
	caller   Caller
}

// Saw takes note of a verdict on an existing key; it never blocks.
func (u *Usage) Saw(v Verdict, caller Caller, now time.Time) {
	if v.Next != nil {
		return // a successor the status does not name yet: its uses come in a moment
	}
	var action audit.Action
	switch {
	case v.Valid():
		if !u.due(v, now) {
			return // another replica, or an earlier pass, wrote it already
		}
		action = audit.ActionUsed
	case v.Reason == ReasonExpired, v.Reason == ReasonSuspended, v.Reason == ReasonInactive:
		action = audit.ActionRejectedUse
	default:
		return
	}
	k := useKey{uid: v.Key.UID, action: action, previous: v.Previous}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.initLocked()
	if last, ok := u.done[k]; ok && now.Sub(last) < u.Interval && !crossed(v, last, now) {
		return
	}
	if pend, ok := u.pending[k]; ok {
		// A use of a previous key past its mark must not be lost behind one
		// before it that is not written yet.
		if crossed(v, pend.at, now) {
			pend.at = now
			u.pending[k] = pend
		}
		return
	}
	u.pending[k] = use{key: types.NamespacedName{Namespace: v.Key.Namespace, Name: v.Key.Name}, uid: v.Key.UID,
		user: v.Key.Spec.User, keyID: v.KeyID(), previous: v.Previous, action: action, reason: v.Reason, at: now,
		caller: Caller{Address: audit.Truncate(caller.Address), UserAgent: audit.Truncate(caller.UserAgent)}}
	select {
	case u.kick <- struct{}{}:
	default:
	}
}

// due reports whether a valid key's use is worth a write at now: once per
// Interval, and for a previous key also the first use past its in-use
// mark (see crossed).
func (u *Usage) due(v Verdict, now time.Time) bool {
	last := v.Key.Status.LastUsedAt
	if v.Previous {
		last = v.Key.Status.PreviousKey.LastUsedAt
	}
	if last == nil {
		return true
	}
	return now.Sub(last.Time) >= u.Interval || crossed(v, last.Time, now)
}

// crossed reports whether a use of a previous key at now is its first past
// PreviousKeyInUseAfter after its successor was written, its last one
// having been at last: that use makes PreviousKeyInUse True, without
// waiting for the interval.
func crossed(v Verdict, last, now time.Time) bool {
	issued := v.Key.Status.IssuedAt
	if !v.Previous || issued == nil {
		return false
	}
	mark := issued.Add(keymintv1alpha1.PreviousKeyInUseAfter)
	return now.After(mark) && !last.After(mark)
}

// initLocked makes the maps on first use; u.mu is held.
func (u *Usage) initLocked() {
	if u.pending == nil {
		u.pending, u.done, u.kick = map[useKey]use{}, map[useKey]time.Time{}, make(chan struct{}, 1)
	}
}

// NeedLeaderElection is false: every replica writes what it saw.
func (u *Usage) NeedLeaderElection() bool { return false }

// Start writes the pending uses until ctx ends.
func (u *Usage) Start(ctx context.Context) error {
	u.mu.Lock()
	u.initLocked()
	kick := u.kick
	u.mu.Unlock()
	retry := time.NewTicker(time.Second)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-kick:
		case <-retry.C:
		}
		u.flush(ctx)
	}
}

// flush writes what is pending; a use whose write failed stays pending.
func (u *Usage) flush(ctx context.Context) {
	u.mu.Lock()
	batch := make([]use, 0, len(u.pending))
	for _, p := range u.pending {
		batch = append(batch, p)
	}
	now := u.Clock.Now()
	for k, at := range u.done {
		if now.Sub(at) >= u.Interval {
			delete(u.done, k)
		}
	}
	u.mu.Unlock()
	for _, p := range batch {
		err := u.write(ctx, p)
		if err != nil {
			log.FromContext(ctx).Error(err, "recording a key's use failed; retrying", "apikey", p.key.String(), "action", p.action)
			continue
		}
		k := useKey{uid: p.uid, action: p.action, previous: p.previous}
		u.mu.Lock()
		if u.pending[k].at.Equal(p.at) { // else a later use came meanwhile
			delete(u.pending, k)
		}
		u.done[k] = p.at
		u.mu.Unlock()
	}
}

// write records one use. A Used one first claims the interval through
// status.lastUsedAt, guarded by the resourceVersion: of replicas that saw
// the key used in the same interval, one writes the record.
func (u *Usage) write(ctx context.Context, p use) error {
	if p.action == audit.ActionUsed {
		claimed, err := u.claim(ctx, p)
		if err != nil || !claimed {
			return err
		}
	}
	bucket := strconv.FormatInt(p.at.Truncate(u.Interval).Unix(), 10)
	if p.previous {
		bucket = p.keyID + "/" + bucket
	}
	id := audit.KeyRecordID(string(p.uid), string(p.action), bucket)
	msg := "key " + p.keyID + " of user " + p.user + " was presented and accepted"
	if p.action == audit.ActionRejectedUse {
		msg = "key " + p.keyID + " of user " + p.user + " was presented and refused: " + string(p.reason)
	}
	rec := audit.Record{ID: id, AuditID: id, Time: p.at.UTC(), Action: p.action, Actor: audit.Actor{Username: audit.UnknownActor},
		Namespace: p.key.Namespace, Name: p.key.Name, UID: string(p.uid), User: p.user, KeyID: p.keyID,
		UserAgent: p.caller.UserAgent, Message: msg}
	if p.caller.Address != "" {
		rec.SourceIPs = []string{p.caller.Address}
	}
	if u.Audit == nil {
		return nil
	}
	return u.Audit.Write([]audit.Record{rec})
}

// claim sets status.lastUsedAt to the use's time unless the key, read live
// after a conflict, was marked used within the interval already.
func (u *Usage) claim(ctx context.Context, p use) (bool, error) {
	for range 3 {
		key := &keymintv1alpha1.APIKey{}
		if err := u.Live.Get(ctx, p.key, key); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		if key.UID != p.uid {
			return false, nil
		}
		base := key.DeepCopy()
		at := &metav1.Time{Time: p.at.UTC().Truncate(time.Second)}
		if p.previous {
			prev := key.Status.PreviousKey
			if prev == nil || prev.KeyID != p.keyID || !u.due(Verdict{Key: key, Previous: true}, p.at) {
				return false, nil
			}
			prev.LastUsedAt = at
		} else {
			if !u.due(Verdict{Key: key}, p.at) {
				return false, nil
			}
			key.Status.LastUsedAt = at
		}
		err := u.Client.Status().Patch(ctx, key, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{}))
		if !apierrors.IsConflict(err) {
			return err == nil, client.IgnoreNotFound(err)
		}
	}
	return false, nil
}
