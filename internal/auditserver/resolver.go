package auditserver

import (
	"context"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
)

// TombstoneTTL is how long a deleted APIKey or Secret stays resolvable: the
// API server sends audit batches seconds after the request, by which time
// the controller may have finished the deletion. It covers the API server's
// retries of a batch.
const TombstoneTTL = 10 * time.Minute

// A watch can return a Secret however long before its end the Secret was
// deleted, so a tombstone is also kept while any watch that was open when
// it was buried still runs. These bound what that costs.
const (
	// MaxWatches bounds the open Secret watches tracked.
	MaxWatches = 10_000
	// MaxTombstones bounds the tombstones kept past TombstoneTTL for open
	// watches; past it, those older than TombstoneTTL go.
	MaxTombstones = 200_000
	// MaxWatchAge drops a watch whose end never arrived: the API server
	// ends every watch within twice its --min-request-timeout (an hour by
	// default).
	MaxWatchAge = 2 * time.Hour
)

// CacheResolver resolves keys from the manager's cache, which holds every
// APIKey and every managed Secret, and remembers recent deletions.
type CacheResolver struct {
	reader client.Reader
	clock  clock.Clock

	mu         sync.Mutex
	tombstones map[tombstoneKey]tombstone
	pruned     time.Time
	// watches are the open Secret watches by audit ID; watchSeq numbers
	// them in the order they started.
	watches  map[string]openWatch
	watchSeq uint64
}

type openWatch struct {
	seq     uint64
	started time.Time
}

type tombstoneKey struct{ kind, namespace, name string }

type tombstone struct {
	ref    KeyRef
	secret ManagedSecret // for a Secret, with its deletion time
	at     time.Time     // when the deletion was seen
	// watchSeq is the last watch started before the deletion: the watches
	// numbered up to it may have returned the Secret.
	watchSeq uint64
}

// indexSecretName indexes APIKeys by the Secret their status names, so an
// audited read of a Secret the cache no longer holds finds its key without
// a scan.
const indexSecretName = "status.secretName"

// NewCacheResolver returns a resolver over c that records the deletions c's
// informers report. Call it before c starts: it adds an index.
func NewCacheResolver(ctx context.Context, c cache.Cache, clk clock.Clock) (*CacheResolver, error) {
	r := &CacheResolver{reader: c, clock: clk, tombstones: map[tombstoneKey]tombstone{}, pruned: clk.Now(), watches: map[string]openWatch{}}
	if err := c.IndexField(ctx, &keymintv1alpha1.APIKey{}, indexSecretName, func(obj client.Object) []string {
		if name := obj.(*keymintv1alpha1.APIKey).Status.SecretName; name != "" {
			return []string{name}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	for _, obj := range []client.Object{&corev1.Secret{}, &keymintv1alpha1.APIKey{}} {
		informer, err := c.GetInformer(ctx, obj)
		if err != nil {
			return nil, err
		}
		if _, err := informer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{DeleteFunc: r.deleted}); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func (r *CacheResolver) deleted(obj any) {
	if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	now := r.clock.Now()
	switch o := obj.(type) {
	case *corev1.Secret:
		if s, ok := managedSecret(o); ok {
			s.Deleted = now
			r.bury(tombstoneKey{"Secret", o.Namespace, o.Name}, tombstone{ref: s.Key, secret: s, at: now})
		}
	case *keymintv1alpha1.APIKey:
		r.bury(tombstoneKey{"APIKey", o.Namespace, o.Name}, tombstone{ref: apiKeyRef(o), at: now})
	}
}

// bury remembers a deletion for TombstoneTTL, or while a watch open at the
// time runs; those no longer needed are dropped at most once a minute, so a
// mass deletion costs no quadratic sweep.
func (r *CacheResolver) bury(k tombstoneKey, t tombstone) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.clock.Now()
	if now.Sub(r.pruned) > time.Minute {
		for id, w := range r.watches {
			if now.Sub(w.started) > MaxWatchAge {
				delete(r.watches, id)
			}
		}
		oldest := r.oldestWatch()
		for key, old := range r.tombstones {
			if !r.needed(old, now, oldest) {
				delete(r.tombstones, key)
			}
		}
		r.pruned = now
	}
	t.watchSeq = r.watchSeq
	r.tombstones[k] = t
}

// oldestWatch is the number of the oldest open watch, 0 if none.
func (r *CacheResolver) oldestWatch() uint64 {
	var oldest uint64
	for _, w := range r.watches {
		if oldest == 0 || w.seq < oldest {
			oldest = w.seq
		}
	}
	return oldest
}

// needed reports whether t may still be asked for: within TombstoneTTL, or
// while a watch open at its burial runs (within MaxTombstones).
func (r *CacheResolver) needed(t tombstone, now time.Time, oldestWatch uint64) bool {
	return now.Sub(t.at) <= TombstoneTTL ||
		(oldestWatch != 0 && oldestWatch <= t.watchSeq && len(r.tombstones) <= MaxTombstones)
}

// WatchStarted implements WatchTracker.
func (r *CacheResolver) WatchStarted(auditID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.watches[auditID]; ok || len(r.watches) >= MaxWatches {
		return
	}
	r.watchSeq++
	r.watches[auditID] = openWatch{seq: r.watchSeq, started: r.clock.Now()}
}

// WatchEnded implements WatchTracker.
func (r *CacheResolver) WatchEnded(auditID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.watches, auditID)
}

func (r *CacheResolver) dug(kind, namespace, name string) (KeyRef, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.tombstones[tombstoneKey{kind, namespace, name}]
	if !ok || !r.needed(t, r.clock.Now(), r.oldestWatch()) {
		return KeyRef{}, false
	}
	return t.ref, true
}

// Secret implements Resolver. A Secret not (or no longer) cached is found
// among recent deletions, then by the issued APIKey whose status names it
// (not by spec: a Secret of that name may be someone else's).
func (r *CacheResolver) Secret(namespace, name string) (KeyRef, bool) {
	ctx := context.Background()
	var s corev1.Secret
	if err := r.reader.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &s); err == nil {
		m, ok := managedSecret(&s)
		return m.Key, ok
	}
	if ref, ok := r.dug("Secret", namespace, name); ok {
		return ref, true
	}
	var list keymintv1alpha1.APIKeyList
	if err := r.reader.List(ctx, &list, client.InNamespace(namespace), client.MatchingFields{indexSecretName: name},
		client.UnsafeDisableDeepCopy); err != nil || len(list.Items) == 0 {
		return KeyRef{}, false
	}
	return apiKeyRef(&list.Items[0]), true
}

// DeletedSecret implements Resolver.
func (r *CacheResolver) DeletedSecret(namespace, name string) (KeyRef, bool) {
	if ref, ok := r.dug("Secret", namespace, name); ok {
		return ref, true
	}
	return r.Secret(namespace, name)
}

// Secrets implements Resolver: the cached Secrets and those deleted
// lately, which a list made before their deletion could still return.
func (r *CacheResolver) Secrets(namespace string) []ManagedSecret {
	var list corev1.SecretList
	// Read-only: the cached objects are not copied.
	if err := r.reader.List(context.Background(), &list, client.InNamespace(namespace),
		client.MatchingLabels{keymintv1alpha1.LabelManagedBy: keymintv1alpha1.ManagedBy}, client.UnsafeDisableDeepCopy); err != nil {
		return nil
	}
	out := make([]ManagedSecret, 0, len(list.Items))
	// A Secret deleted and minted again under its name held another key.
	live := map[tombstoneKey]string{}
	for i := range list.Items {
		if s, ok := managedSecret(&list.Items[i]); ok {
			out = append(out, s)
			live[tombstoneKey{"Secret", s.Namespace, s.Name}] = s.Key.KeyID
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now, oldest := r.clock.Now(), r.oldestWatch()
	for k, t := range r.tombstones {
		if k.kind == "Secret" && (namespace == "" || k.namespace == namespace) && live[k] != t.ref.KeyID && r.needed(t, now, oldest) {
			out = append(out, t.secret)
		}
	}
	return out
}

// APIKey implements Resolver.
func (r *CacheResolver) APIKey(namespace, name string) (KeyRef, bool, bool) {
	var key keymintv1alpha1.APIKey
	if err := r.reader.Get(context.Background(), client.ObjectKey{Namespace: namespace, Name: name}, &key); err == nil {
		return apiKeyRef(&key), key.DeletionTimestamp.IsZero(), true
	}
	ref, ok := r.dug("APIKey", namespace, name)
	return ref, false, ok
}

// managedSecret reads the key a managed Secret holds; false for any other.
func managedSecret(s *corev1.Secret) (ManagedSecret, bool) {
	if s.Labels[keymintv1alpha1.LabelManagedBy] != keymintv1alpha1.ManagedBy || s.Type != keymintv1alpha1.SecretType {
		return ManagedSecret{}, false
	}
	ref := KeyRef{
		Namespace: s.Namespace,
		Name:      s.Labels[keymintv1alpha1.LabelAPIKey],
		User:      string(s.Data[keymintv1alpha1.DataUser]),
		KeyID:     string(s.Data[keymintv1alpha1.DataKeyID]),
	}
	for _, o := range s.OwnerReferences {
		if o.Kind == "APIKey" && o.Name == ref.Name {
			ref.UID = string(o.UID)
		}
	}
	return ManagedSecret{Name: s.Name, Namespace: s.Namespace, Labels: s.Labels, Type: s.Type, Created: s.CreationTimestamp.Time, Key: ref}, true
}

func apiKeyRef(k *keymintv1alpha1.APIKey) KeyRef {
	return KeyRef{Namespace: k.Namespace, Name: k.Name, UID: string(k.UID), User: k.Spec.User, KeyID: k.Status.KeyID}
}
