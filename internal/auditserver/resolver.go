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
}

type tombstoneKey struct{ kind, namespace, name string }

type tombstone struct {
	ref     KeyRef
	expires time.Time
}

// NewCacheResolver returns a resolver over c that records the deletions c's
// informers report.
func NewCacheResolver(ctx context.Context, c cache.Cache, clk clock.Clock) (*CacheResolver, error) {
	r := &CacheResolver{reader: c, clock: clk, tombstones: map[tombstoneKey]tombstone{}}
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
	switch o := obj.(type) {
	case *corev1.Secret:
		if ref, ok := secretRef(o); ok {
			r.bury("Secret", o.Namespace, o.Name, ref)
		}
	case *keymintv1alpha1.APIKey:
		r.bury("APIKey", o.Namespace, o.Name, apiKeyRef(o))
	}
}

func (r *CacheResolver) bury(kind, namespace, name string, ref KeyRef) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.clock.Now()
	for k, t := range r.tombstones {
		if now.After(t.expires) {
			delete(r.tombstones, k)
		}
	}
	r.tombstones[tombstoneKey{kind, namespace, name}] = tombstone{ref: ref, expires: now.Add(TombstoneTTL)}
}

func (r *CacheResolver) dug(kind, namespace, name string) (KeyRef, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.tombstones[tombstoneKey{kind, namespace, name}]
	if !ok || r.clock.Now().After(t.expires) {
		return KeyRef{}, false
	}
	return t.ref, true
}

// Secret implements Resolver. A Secret not (or no longer) cached is found
// among recent deletions, then by the APIKey that names it.
func (r *CacheResolver) Secret(namespace, name string) (KeyRef, bool) {
	ctx := context.Background()
	var s corev1.Secret
	if err := r.reader.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &s); err == nil {
		return secretRef(&s)
	}
	if ref, ok := r.dug("Secret", namespace, name); ok {
		return ref, true
	}
	var list keymintv1alpha1.APIKeyList
	if err := r.reader.List(ctx, &list, client.InNamespace(namespace)); err != nil {
		return KeyRef{}, false
	}
	for i := range list.Items {
		if list.Items[i].SecretNameOrDefault() == name {
			return apiKeyRef(&list.Items[i]), true
		}
	}
	return KeyRef{}, false
}

// DeletedSecret implements Resolver.
func (r *CacheResolver) DeletedSecret(namespace, name string) (KeyRef, bool) {
	if ref, ok := r.dug("Secret", namespace, name); ok {
		return ref, true
	}
	return r.Secret(namespace, name)
}

// Secrets implements Resolver.
func (r *CacheResolver) Secrets(namespace string) []ManagedSecret {
	var list corev1.SecretList
	if err := r.reader.List(context.Background(), &list, client.InNamespace(namespace),
		client.MatchingLabels{keysecret.LabelManagedBy: keysecret.ManagedBy}); err != nil {
		return nil
	}
	out := make([]ManagedSecret, 0, len(list.Items))
	for i := range list.Items {
		s := &list.Items[i]
		if ref, ok := secretRef(s); ok {
			out = append(out, ManagedSecret{Name: s.Name, Namespace: s.Namespace, Labels: s.Labels, Type: s.Type, Key: ref})
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

// secretRef reads the key a managed Secret holds; false for any other.
func secretRef(s *corev1.Secret) (KeyRef, bool) {
	if s.Labels[keysecret.LabelManagedBy] != keysecret.ManagedBy || s.Type != keysecret.Type {
		return KeyRef{}, false
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
	return ref, true
}

func apiKeyRef(k *keymintv1alpha1.APIKey) KeyRef {
	return KeyRef{Namespace: k.Namespace, Name: k.Name, UID: string(k.UID), User: k.Spec.User, KeyID: k.Status.KeyID}
}
