// Package controllers holds the APIKey controller: wiring and the thin
// Reconcile here, the steps it runs in files named for them, and the pure
// decisions and status setters in decisions.go and status.go.
package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/time/rate"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/apiwait"
	"github.com/keymint/keymint/internal/audit"
	"github.com/keymint/keymint/internal/expiry"
	"github.com/keymint/keymint/internal/keys"
	"github.com/keymint/keymint/internal/keysecret"
)

// DefaultMaxRequeue bounds how long a key waits before its expiry is checked
// against the clock again.
const DefaultMaxRequeue = time.Hour

// errCacheStale makes a reconcile wait for the cache to catch up.
var errCacheStale = errors.New("the cached APIKey is older than the API server's")

// APIKeyReconciler issues, caps, expires and revokes API keys.
type APIKeyReconciler struct {
	// Client reads from the cache and writes to the API server.
	client.Client
	// APIReader reads from the API server, for decisions a stale cache
	// must not make: before minting and before deleting.
	APIReader client.Reader
	Recorder  events.EventRecorder
	Clock     clock.PassiveClock

	// MaxKeysPerUser is the number of Active keys a user may hold.
	MaxKeysPerUser int
	// SlotNamespace holds the slot Leases that enforce MaxKeysPerUser.
	SlotNamespace string
	// MaxRequeue bounds the wait before an expiry is checked again.
	MaxRequeue time.Duration
	// AccessRecheck bounds the wait before a key's access is checked again.
	AccessRecheck time.Duration
	// MaxConcurrentReconciles is the number of keys reconciled at once.
	MaxConcurrentReconciles int
	// Mint draws a key; keys.Mint unless a test says otherwise.
	Mint func() (keys.Key, error)
	// Signer signs the Secrets the controller mints and tells them from
	// planted ones; SetupWithManager loads it when nil.
	Signer *keysecret.Signer
	// Audit receives a record of every Event about a key's life; nil
	// records nothing.
	Audit audit.Writer
}

// +kubebuilder:rbac:groups=keymint.io,resources=apikeys,verbs=get;list;watch;update;patch;delegate
// +kubebuilder:rbac:groups=keymint.io,resources=apikeys/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=keymint.io,resources=apikeys/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=keymint-system,resources=leases,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=rolebindings;clusterrolebindings,verbs=list;watch

// SetupWithManager registers the controller and its index with mgr.
func (r *APIKeyReconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	if r.Mint == nil {
		r.Mint = keys.Mint
	}
	if r.MaxRequeue <= 0 {
		r.MaxRequeue = DefaultMaxRequeue
	}
	if r.AccessRecheck <= 0 {
		r.AccessRecheck = DefaultAccessRecheck
	}
	if r.Signer == nil {
		err := apiwait.Retry(ctx, mgr.GetLogger(), "loading the signing key", func() (err error) {
			r.Signer, err = LoadSigner(ctx, mgr.GetAPIReader(), mgr.GetClient(), r.SlotNamespace)
			return err
		})
		if err != nil {
			return err
		}
	}
	if err := mgr.GetFieldIndexer().IndexField(ctx, &keymintv1alpha1.APIKey{}, IndexWaitingUser, indexWaitingUser); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&keymintv1alpha1.APIKey{}, builder.WithPredicates(specOrMetaChanged)).
		Watches(&corev1.Secret{}, r.secretEvents(), builder.WithPredicates(secretCreatedOrGone)).
		// A slot freed lets a waiting key of its user in.
		Watches(&coordinationv1.Lease{}, r.slotEvents(), builder.WithPredicates(slotChanged)).
		// Access granted or removed changes which keys may be Active.
		Watches(&rbacv1.RoleBinding{}, r.bindingChanged(), builder.OnlyMetadata).
		Watches(&rbacv1.ClusterRoleBinding{}, r.bindingChanged(), builder.OnlyMetadata).
		WithOptions(controller.Options{MaxConcurrentReconciles: max(1, r.MaxConcurrentReconciles), RateLimiter: failureBackoff()}).
		Complete(r)
}

// Reconcile brings one APIKey to its desired state: get it, handle its
// deletion, hold the finalizer, run the steps, and write status once.
func (r *APIKeyReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	key := &keymintv1alpha1.APIKey{}
	if err := r.Get(ctx, req.NamespacedName, key); err != nil {
		if apierrors.IsNotFound(err) {
			return ctrl.Result{}, r.cleanUpAfter(ctx, req.NamespacedName)
		}
		return ctrl.Result{}, err
	}
	if !key.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.finalize(ctx, key)
	}
	if !controllerutil.ContainsFinalizer(key, keymintv1alpha1.Finalizer) {
		patch := client.MergeFromWithOptions(key.DeepCopy(), client.MergeFromWithOptimisticLock{})
		controllerutil.AddFinalizer(key, keymintv1alpha1.Finalizer)
		if err := r.Patch(ctx, key, patch); err != nil {
			return requeueOnConflict(err)
		}
	}

	now := r.Clock.Now()
	base := key.DeepCopy()
	defer func() {
		// The steps count a requeue from now. The writes since then take
		// time, under load a good part of a second, which must not make an
		// expiry late.
		result.RequeueAfter = requeueFrom(result.RequeueAfter, r.Clock.Since(now))
		if retErr != nil && !errors.Is(retErr, errCacheStale) {
			setRetrying(key, r.Clock.Now(), retErr.Error())
		}
		if err := r.patchStatus(ctx, base, key); err != nil {
			result, retErr = requeueOnConflict(errors.Join(retErr, err))
		}
		if errors.Is(retErr, errCacheStale) {
			result, retErr = ctrl.Result{RequeueAfter: time.Second}, nil
		}
	}()
	return r.reconcileKey(ctx, key, now)
}

// reconcileKey runs the steps in order; the first that settles the key ends
// it. Requeues count from now.
func (r *APIKeyReconciler) reconcileKey(ctx context.Context, key *keymintv1alpha1.APIKey, now time.Time) (ctrl.Result, error) {
	switch {
	case invalidAt(key):
		// spec.expiration.at is immutable, so such a key never held a slot.
		return r.stall(ctx, key, keymintv1alpha1.ReasonInvalidExpiration,
			"spec.expiration.at "+key.Spec.Expiration.At.UTC().Format(time.RFC3339)+" is not after the APIKey's creation "+
				key.CreationTimestamp.UTC().Format(time.RFC3339))
	case key.Status.Phase == keymintv1alpha1.PhaseExpired:
		return ctrl.Result{}, r.releaseSlots(ctx, key, r.Client)
	case r.isDue(key, now):
		return r.expire(ctx, key)
	}

	allowed, err := r.hasAccess(ctx, key)
	if err != nil {
		return ctrl.Result{}, err
	}
	if !allowed {
		return ctrl.Result{RequeueAfter: r.nextCheck(now, knownExpiry(key))}, r.denyAccess(ctx, key)
	}

	if readyReason(key) == keymintv1alpha1.ReasonSecretConflict {
		// Someone else's Secret is not in the cache; look before claiming a slot.
		if conflict, err := r.secretConflict(ctx, key); err != nil || conflict {
			return r.stallOnConflict(ctx, key, err)
		}
	}
	claim, err := r.claimSlot(ctx, key)
	if err != nil {
		return ctrl.Result{}, err
	}
	if !claim.held {
		// A key can expire while it waits, without ever being issued.
		return ctrl.Result{RequeueAfter: r.nextCheck(now, knownExpiry(key))}, r.awaitSlot(ctx, key, claim.holders)
	}
	return r.issue(ctx, key, claim.fresh, now)
}

// MaxFailureBackoff bounds how long a key that failed waits before it is
// tried again. client-go's default, 1000 s, would leave a key that failed
// through an API server outage waiting long after the outage ended.
const MaxFailureBackoff = 5 * time.Second

// failureBackoff is client-go's default rate limiter of failed reconciles,
// with MaxFailureBackoff as its ceiling.
func failureBackoff() workqueue.TypedRateLimiter[reconcile.Request] {
	return workqueue.NewTypedMaxOfRateLimiter(
		workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](5*time.Millisecond, MaxFailureBackoff),
		&workqueue.TypedBucketRateLimiter[reconcile.Request]{Limiter: rate.NewLimiter(rate.Limit(10), 100)},
	)
}

// nextCheck is when to look at a key again: at its expiry, but no later
// than the next access check.
func (r *APIKeyReconciler) nextCheck(now time.Time, expiresAt *time.Time) time.Duration {
	limit := min(r.MaxRequeue, r.AccessRecheck)
	if d := expiry.RequeueAfter(now, expiresAt, limit); d > 0 {
		return d
	}
	return limit
}

// patchStatus writes the status if it changed, guarded by the
// resourceVersion read, so a stale copy never overwrites a newer status.
func (r *APIKeyReconciler) patchStatus(ctx context.Context, base, key *keymintv1alpha1.APIKey) error {
	key.Status.ObservedGeneration = key.Generation
	key.Status.Expires = expiresShown(key)
	if equality.Semantic.DeepEqual(base.Status, key.Status) {
		return nil
	}
	return r.Status().Patch(ctx, key, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{}))
}

// requeueFrom is a requeue after d counted from a moment that is elapsed
// ago: what remains of d, but at least a millisecond, since no wait means
// no requeue.
func requeueFrom(d, elapsed time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	return max(d-elapsed, time.Millisecond)
}

// requeueOnConflict turns a write conflict, the normal result of a stale
// cache or a concurrent reconcile, into a quiet retry.
func requeueOnConflict(err error) (ctrl.Result, error) {
	if apierrors.IsConflict(err) {
		return ctrl.Result{RequeueAfter: 100 * time.Millisecond}, nil
	}
	return ctrl.Result{}, err
}

// recordID names what a record is about, the same on every replica and
// every retry, so that the audit log keeps one record and a reader of stdout
// can drop the repeats: an issue or a suspension per key ID, an expiry or a
// deletion per APIKey, and a warning, which can recur, per the APIKey's
// version it was seen on (a retry sees the same version, since the status
// is written only after the record).
func recordID(key *keymintv1alpha1.APIKey, reason string) string {
	switch reason {
	case keymintv1alpha1.ReasonIssued, keymintv1alpha1.ReasonReissued, keymintv1alpha1.ReasonSuspended:
		return "keymint/" + string(key.UID) + "/" + reason + "/" + key.Status.KeyID
	case keymintv1alpha1.ReasonExpired, keymintv1alpha1.ReasonDeleted:
		return "keymint/" + string(key.UID) + "/" + reason
	}
	return "keymint/" + string(key.UID) + "/" + reason + "/rv" + key.ResourceVersion
}

// record writes the audit record of something that happened to key, then
// records the Event. Messages name key IDs, users and expiries, never a
// key. The controller cannot know who caused what it sees, so the actor is
// "unknown"; the API server's audit stream names it. An error means the
// record is not durable yet: the step fails before the status shows the
// change, and the reconcile retries until it is written.
func (r *APIKeyReconciler) record(ctx context.Context, key *keymintv1alpha1.APIKey, eventType, reason, note string, args ...any) error {
	if r.Audit != nil {
		if err := r.writeRecord(key, reason, fmt.Sprintf(note, args...)); err != nil {
			log.FromContext(ctx).Error(err, "writing an audit record failed; retrying", "action", reason)
			return fmt.Errorf("writing the audit record %s: %w", reason, err)
		}
	}
	r.Recorder.Eventf(key, nil, eventType, reason, reason, note, args...)
	return nil
}

func (r *APIKeyReconciler) writeRecord(key *keymintv1alpha1.APIKey, reason, message string) error {
	id := recordID(key, reason)
	rec := audit.Record{
		ID:        id,
		Time:      r.Clock.Now().UTC(),
		Action:    audit.Action(reason),
		Actor:     audit.Actor{Username: audit.UnknownActor},
		Namespace: key.Namespace,
		Name:      key.Name,
		UID:       string(key.UID),
		User:      key.Spec.User,
		KeyID:     key.Status.KeyID,
		AuditID:   id,
		Message:   message,
	}
	return r.Audit.Write([]audit.Record{rec})
}
