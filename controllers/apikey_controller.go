// Package controllers holds the APIKey controller. Its files read
// top-down, each calling only those below it:
//   - apikey_controller.go: the reconciler, its wiring and the thin
//     Reconcile: gather, decide, act, record, one status write;
//   - input.go gathers what a decision needs; decide.go is a chain of
//     named pure checks; act.go carries out the Plan, with secrets.go (the
//     key's Secret), owner_access.go (the owner's grant) and finalize.go
//     (deletion);
//   - lifecycle.go turns a change of state (transitions) and what keymint
//     observes (a deletion, a planted Secret) into audit records and
//     Events, one road;
//   - status.go sets the status and words its messages; expiry.go is the
//     requeue math; access.go asks the API server about access;
//   - events.go maps other objects' changes to keys; indexes.go, cache.go,
//     tombstones.go, signing.go and permissions.go are what they say.
//
// Expiry and readiness are methods of the API type (api/v1alpha1); the cap
// is internal/slots.
package controllers

import (
	"context"
	"errors"
	"time"

	"golang.org/x/time/rate"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
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
	"github.com/keymint/keymint/internal/audit"
	"github.com/keymint/keymint/internal/keys"
	"github.com/keymint/keymint/internal/keysecret"
	"github.com/keymint/keymint/internal/metrics"
	"github.com/keymint/keymint/internal/slots"
)

// DefaultMaxRequeue bounds how long a key waits before its expiry is checked
// against the clock again.
const DefaultMaxRequeue = time.Hour

// errCacheStale makes a reconcile wait for the cache to catch up.
var errCacheStale = slots.ErrCacheStale

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
	// ExpiryWarning is how long before its expiry an Active key is
	// ExpiringSoon; DefaultExpiryWarning when zero.
	ExpiryWarning time.Duration
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

	// reconciled, when set, hears of every finished pass over a key, with
	// the key's resourceVersion it read: tests await a reconcile with it
	// instead of watching a window of time.
	reconciled func(key types.NamespacedName, resourceVersion string)
	// deleted remembers APIKeys that went away, for the record of their
	// deletion (see tombstones).
	deleted tombstones
	// after runs f after d (time.AfterFunc; a test's in its place).
	after func(d time.Duration, f func())
}

// +kubebuilder:rbac:groups=keymint.io,resources=apikeys,verbs=get;list;watch;update;patch;delegate
// +kubebuilder:rbac:groups=keymint.io,resources=apikeys/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=keymint.io,resources=apikeys/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;delete
// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=keymint-system,resources=leases,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=rolebindings;clusterrolebindings;roles;clusterroles,verbs=list;watch

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
	if r.ExpiryWarning <= 0 {
		r.ExpiryWarning = DefaultExpiryWarning
	}
	if r.Signer == nil {
		return errors.New("the APIKey controller needs the signing key (LoadSigner)")
	}
	if err := mgr.GetFieldIndexer().IndexField(ctx, &keymintv1alpha1.APIKey{}, IndexWaitingUser, indexWaitingUser); err != nil {
		return err
	}
	for _, ix := range []struct {
		obj   client.Object
		field string
		fn    client.IndexerFunc
	}{
		{&rbacv1.RoleBinding{}, IndexRoleRef, indexRoleRef},
		{&rbacv1.ClusterRoleBinding{}, IndexRoleRef, indexRoleRef},
	} {
		if err := mgr.GetFieldIndexer().IndexField(ctx, ix.obj, ix.field, ix.fn); err != nil {
			return err
		}
	}
	if err := mgr.Add(RemoveOwnerGrants{Reader: r.APIReader, Writer: r.Client}); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("apikey").
		Watches(&keymintv1alpha1.APIKey{}, r.apiKeyEvents(), builder.WithPredicates(specOrMetaChanged)).
		Watches(&corev1.Secret{}, r.secretEvents(), builder.WithPredicates(secretCreatedOrGone)).
		// A slot freed lets a waiting key of its user in.
		Watches(&coordinationv1.Lease{}, r.slotEvents(), builder.WithPredicates(slotChanged)).
		// Access granted or removed changes which keys may be Active.
		Watches(&rbacv1.RoleBinding{}, r.bindingEvents()).
		Watches(&rbacv1.ClusterRoleBinding{}, r.bindingEvents()).
		Watches(&rbacv1.Role{}, r.roleEvents(), builder.OnlyMetadata).
		Watches(&rbacv1.ClusterRole{}, r.roleEvents(), builder.OnlyMetadata).
		WithOptions(controller.Options{MaxConcurrentReconciles: max(1, r.MaxConcurrentReconciles), RateLimiter: failureBackoff()}).
		Complete(r)
}

// Reconcile brings one APIKey to its desired state: get it, handle its
// deletion, hold the finalizer, then gather → decide → act, record the
// transitions, and write status once.
func (r *APIKeyReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	key := &keymintv1alpha1.APIKey{}
	if err := r.Get(ctx, req.NamespacedName, key); err != nil {
		if apierrors.IsNotFound(err) {
			return ctrl.Result{}, r.cleanUpAfter(ctx, req.NamespacedName)
		}
		return ctrl.Result{}, err
	}
	if r.reconciled != nil {
		defer r.reconciled(req.NamespacedName, key.ResourceVersion)
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

	pass := &keyPass{APIKeyReconciler: r, key: key, now: r.Clock.Now()}
	base := key.DeepCopy()
	in, err := r.gather(ctx, key, pass.now)
	if err == nil {
		plan := decide(in)
		// As cert-manager logs its policy checks: which check decided, and why.
		log.FromContext(ctx).V(1).Info("decided", "check", plan.Check, "action", plan.Do, "reason", plan.Reason, "message", plan.Message)
		err = pass.act(ctx, plan)
	}
	return r.finish(ctx, pass, base, err)
}

// finish records the pass's transitions, then writes the status: a change
// is shown only once its record is durable. A failed record puts the
// status back, and the pass is retried.
func (r *APIKeyReconciler) finish(ctx context.Context, pass *keyPass, base *keymintv1alpha1.APIKey, err error) (ctrl.Result, error) {
	key, now := pass.key, pass.now
	if err == nil {
		for _, t := range transitions(&base.Status, key) {
			if err = r.lifecycle().record(ctx, key, now, t); err != nil {
				key.Status = *base.Status.DeepCopy()
				break
			}
			if t.reason == keymintv1alpha1.ReasonIssued {
				metrics.IssueLatency.Observe(now.Sub(key.CreationTimestamp.Time).Seconds())
			}
		}
	}
	stale := errors.Is(err, errCacheStale)
	if err != nil && !stale {
		setRetrying(key, now, err.Error())
	}
	if perr := r.patchStatus(ctx, base, key); perr != nil {
		if err == nil || stale {
			return requeueOnConflict(perr)
		}
		return ctrl.Result{}, errors.Join(err, perr)
	}
	switch {
	case stale:
		return ctrl.Result{RequeueAfter: staleCacheRetry}, nil
	case err != nil:
		return ctrl.Result{}, err
	}
	return pass.result(), nil
}

// staleCacheRetry is how soon a pass that found the cache behind the API
// server runs again. The cache is typically behind by the pass's own last
// status write, milliseconds: a key waiting for a slot whose message just
// changed must not lose a second when the slot frees (the cap's hand-on).
const staleCacheRetry = 100 * time.Millisecond

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

// requeueOnConflict turns a write conflict, the normal result of a stale
// cache or a concurrent reconcile, into a quiet retry.
func requeueOnConflict(err error) (ctrl.Result, error) {
	if apierrors.IsConflict(err) {
		return ctrl.Result{RequeueAfter: 100 * time.Millisecond}, nil
	}
	return ctrl.Result{}, err
}
