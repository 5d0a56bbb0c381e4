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
	"github.com/keymint/keymint/internal/keysecret"
)

// TombstoneTTL is how long a deleted APIKey or Secret stays resolvable: the
// API server sends audit batches seconds after the request, by which time
// the controller may have finished the deletion. It covers the API server's
// retries of a batch.
const TombstoneTTL = 10 * time.Minute

// CacheResolver resolves keys from the manager's cache, which holds every
// APIKey and every managed Secret, and remembers recent deletions.
type CacheResolver struct {
	reader client.Reader
	clock  clock.Clock

	mu         sync.Mutex
	tombstones map[tombstoneKey]tombstone
	pruned     time.Time
}

type tombstoneKey struct{ kind, namespace, name string }

type tombstone struct {
	ref    KeyRef
	secret ManagedSecret // for a Secret, with its deletion time
	at     time.Time     // when the deletion was seen
}

// indexSecretName indexes APIKeys by the Secret their status names, so an
// audited read of a Secret the cache no longer holds finds its key without
// a scan.
const indexSecretName = "status.secretName"

// NewCacheResolver returns a resolver over c that records the deletions c's
// informers report. Call it before c starts: it adds an index.
func NewCacheResolver(ctx context.Context, c cache.Cache, clk clock.Clock) (*CacheResolver, error) {
	r := &CacheResolver{reader: c, clock: clk, tombstones: map[tombstoneKey]tombstone{}, pruned: clk.Now()}
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

// bury remembers a deletion for TombstoneTTL; expired ones are dropped at
// most once a minute, so a mass deletion costs no quadratic sweep.
func (r *CacheResolver) bury(k tombstoneKey, t tombstone) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.clock.Now()
	if now.Sub(r.pruned) > time.Minute {
		for key, old := range r.tombstones {
			if now.Sub(old.at) > TombstoneTTL {
				delete(r.tombstones, key)
			}
		}
		r.pruned = now
	}
	r.tombstones[k] = t
}

func (r *CacheResolver) dug(kind, namespace, name string) (KeyRef, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.tombstones[tombstoneKey{kind, namespace, name}]
	if !ok || r.clock.Since(t.at) > TombstoneTTL {
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
		client.MatchingLabels{keysecret.LabelManagedBy: keysecret.ManagedBy}, client.UnsafeDisableDeepCopy); err != nil {
		return nil
	}
	out := make([]ManagedSecret, 0, len(list.Items))
	live := map[tombstoneKey]bool{}
	for i := range list.Items {
		if s, ok := managedSecret(&list.Items[i]); ok {
			out = append(out, s)
			live[tombstoneKey{"Secret", s.Namespace, s.Name}] = true
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, t := range r.tombstones {
		if k.kind == "Secret" && (namespace == "" || k.namespace == namespace) && !live[k] && r.clock.Since(t.at) <= TombstoneTTL {
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
	if s.Labels[keysecret.LabelManagedBy] != keysecret.ManagedBy || s.Type != keysecret.Type {
		return ManagedSecret{}, false
	}
	ref := KeyRef{
		Namespace: s.Namespace,
		Name:      s.Labels[keysecret.LabelAPIKey],
		User:      string(s.Data[keysecret.DataUser]),
		KeyID:     string(s.Data[keysecret.DataKeyID]),
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
