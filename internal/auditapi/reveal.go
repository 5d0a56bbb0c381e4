package auditapi

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	apiserveraudit "k8s.io/apiserver/pkg/audit"
	"k8s.io/apiserver/pkg/authentication/user"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	auditv1alpha1 "github.com/keymint/keymint/api/audit/v1alpha1"
	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/audit"
	"github.com/keymint/keymint/internal/keysecret"
)

// revealREST serves apikeyreveals: create only. A reveal gives the key to
// the APIKey's spec.user and to nobody else, and only once its Viewed
// record is durable.
type revealREST struct {
	// reader reads APIKeys (the cache); live reads Secrets, since the
	// cache keeps no key.
	reader, live client.Reader
	signer       *keysecret.Signer
	// trail must be durable when Write returns (the audit log); echo
	// takes every record too, best effort (stdout's lines).
	trail, echo audit.Writer
	clock       clock.PassiveClock
	// refusals aggregates an actor's refusals, as the audit webhook's are:
	// anyone allowed to create reveals could otherwise fill the trail.
	refusals *audit.Aggregator
	// views bounds the reveals one actor makes, each a durable record.
	views *actorLimits
}

var (
	_ rest.Storage              = &revealREST{}
	_ rest.Scoper               = &revealREST{}
	_ rest.Creater              = &revealREST{} //nolint:misspell // the interface is spelled so
	_ rest.SingularNameProvider = &revealREST{}
)

func (r *revealREST) New() runtime.Object     { return &auditv1alpha1.APIKeyReveal{} }
func (r *revealREST) Destroy()                {}
func (r *revealREST) NamespaceScoped() bool   { return true }
func (r *revealREST) GetSingularName() string { return "apikeyreveal" }

var revealResource = auditv1alpha1.GroupVersion.WithResource(auditv1alpha1.ResourceAPIKeyReveals).GroupResource()

// Create reveals the key of the APIKey spec.name names, in the request's
// namespace, to its owner.
func (r *revealREST) Create(ctx context.Context, obj runtime.Object, validate rest.ValidateObjectFunc, _ *metav1.CreateOptions) (runtime.Object, error) {
	req, ok := obj.(*auditv1alpha1.APIKeyReveal)
	if !ok {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("not an APIKeyReveal: %T", obj))
	}
	if errs := validation.IsDNS1123Subdomain(req.Spec.Name); len(errs) > 0 {
		return nil, apierrors.NewInvalid(auditv1alpha1.GroupVersion.WithKind("APIKeyReveal").GroupKind(), req.Name,
			field.ErrorList{field.Invalid(field.NewPath("spec", "name"), req.Spec.Name, "the APIKey's name: "+strings.Join(errs, "; "))})
	}
	if validate != nil {
		if err := validate(ctx, obj); err != nil {
			return nil, err
		}
	}
	if r.trail == nil {
		return nil, apierrors.NewServiceUnavailable("keymint keeps no durable audit log (--audit-log-path), and reveals no key without a record of the view")
	}
	ns, _ := genericapirequest.NamespaceFrom(ctx)
	caller, ok := genericapirequest.UserFrom(ctx)
	if !ok {
		return nil, apierrors.NewUnauthorized("no authenticated user")
	}
	key := &keymintv1alpha1.APIKey{}
	if err := r.reader.Get(ctx, types.NamespacedName{Namespace: ns, Name: req.Spec.Name}, key); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, apierrors.NewNotFound(keymintv1alpha1.GroupVersion.WithResource("apikeys").GroupResource(), req.Spec.Name)
		}
		return nil, apierrors.NewServiceUnavailable("reading the APIKey: " + err.Error())
	}
	rec := r.record(ctx, caller, key)
	if caller.GetName() != key.Spec.User {
		rec.Action = audit.ActionViewDenied
		rec.KeyID = ""
		rec.Message = fmt.Sprintf("%s was refused the key of APIKey %s/%s: only its owner, %s, may see it", caller.GetName(), ns, key.Name, key.Spec.User)
		// The refusal stands whether or not its record could be written.
		_, _ = r.refusals.Write(r.refusalTrail(), []audit.Record{rec}, r.clock.Now())
		return nil, apierrors.NewForbidden(revealResource, req.Spec.Name,
			fmt.Errorf("only the APIKey's owner (spec.user) may see its key"))
	}
	if !r.views.allow(caller.GetName()) {
		return nil, apierrors.NewTooManyRequests(fmt.Sprintf("%s revealed keys more than %d times in a row; wait a few seconds", caller.GetName(), revealBurst), 2)
	}
	secret, in, err := r.trusted(ctx, key)
	if err != nil {
		return nil, err
	}
	rec.KeyID = in.KeyID
	rec.Message = fmt.Sprintf("%s viewed key %s of APIKey %s/%s through keymint's API", caller.GetName(), in.KeyID, ns, key.Name)
	if err := r.trail.Write([]audit.Record{rec}); err != nil {
		return nil, apierrors.NewServiceUnavailable("the view could not be recorded, so no key was returned: " + err.Error())
	}
	if r.echo != nil {
		_ = r.echo.Write([]audit.Record{rec})
	}
	out := req.DeepCopy()
	out.Namespace = ns
	out.CreationTimestamp = metav1.NewTime(r.clock.Now())
	out.Status = auditv1alpha1.APIKeyRevealStatus{Key: string(secret.Data[keymintv1alpha1.DataKey]), KeyID: in.KeyID}
	if in.ExpiresAt != nil {
		out.Status.ExpiresAt = &metav1.Time{Time: *in.ExpiresAt}
	}
	return out, nil
}

// refusalTrail is where refusals go: the trail, then its echo.
func (r *revealREST) refusalTrail() audit.Writer {
	if r.echo == nil {
		return r.trail
	}
	return audit.Multi{r.trail, r.echo}
}

// trusted reads the key's Secret and checks that keymint minted it for
// this APIKey and that it holds the status's key: a planted Secret's key is
// never revealed as the APIKey's.
func (r *revealREST) trusted(ctx context.Context, key *keymintv1alpha1.APIKey) (*corev1.Secret, keysecret.Issue, error) {
	if key.Status.SecretName == "" || key.Status.KeyHash == "" {
		return nil, keysecret.Issue{}, apierrors.NewConflict(revealResource, key.Name,
			fmt.Errorf("APIKey %s/%s has no key yet (phase %q): wait until it is Active", key.Namespace, key.Name, key.Status.Phase))
	}
	secret := &corev1.Secret{}
	if err := r.live.Get(ctx, types.NamespacedName{Namespace: key.Namespace, Name: key.Status.SecretName}, secret); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, keysecret.Issue{}, apierrors.NewConflict(revealResource, key.Name,
				fmt.Errorf("the Secret of APIKey %s/%s is gone; keymint is issuing a new key", key.Namespace, key.Name))
		}
		return nil, keysecret.Issue{}, apierrors.NewServiceUnavailable("reading the key's Secret: " + err.Error())
	}
	in, err := r.signer.Verify(secret, key)
	if err == nil && in.KeyHash != key.Status.KeyHash {
		// A renewal the cache has not seen yet: ask the API server.
		fresh := &keymintv1alpha1.APIKey{}
		if r.live.Get(ctx, client.ObjectKeyFromObject(key), fresh) == nil && fresh.UID == key.UID {
			key.Status = fresh.Status
		}
	}
	if err != nil || in.KeyHash != key.Status.KeyHash {
		return nil, keysecret.Issue{}, apierrors.NewConflict(revealResource, key.Name,
			fmt.Errorf("the Secret of APIKey %s/%s does not hold the key its status names; try again in a moment", key.Namespace, key.Name))
	}
	return secret, in, nil
}

// record is the view's record, with what the API server vouches for about
// the request: who, from where, and its audit ID.
func (r *revealREST) record(ctx context.Context, caller user.Info, key *keymintv1alpha1.APIKey) audit.Record {
	rec := audit.Record{
		Time:      r.clock.Now().UTC(),
		Action:    audit.ActionViewed,
		Actor:     audit.Actor{Username: caller.GetName(), Groups: caller.GetGroups()},
		Namespace: key.Namespace,
		Name:      key.Name,
		UID:       string(key.UID),
		User:      key.Spec.User,
	}
	// kube-apiserver forwards its audit ID (Audit-ID), which names the
	// request in its own audit log. A client may choose it, so it is not
	// the record's ID: every reveal is an event of its own.
	rec.AuditID = apiserveraudit.GetAuditIDTruncated(ctx)
	rec.ID = "keymint/reveal/" + string(uuid.NewUUID())
	return rec
}
