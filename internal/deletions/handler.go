// Package deletions names who deleted an APIKey or a key's Secret on every
// cluster, without the API server's audit webhook: a validating admission
// webhook on those deletes (ValidatingWebhookConfiguration
// keymint-deletions), served beside keymint's aggregated API. It always
// allows, and the API server ignores its failures (failurePolicy: Ignore):
// an outage of keymint never blocks a delete, it only leaves the actor
// unknown.
//
// The record is written before the answer, so it comes before the
// controller's: an APIKey's carries the ID of the controller's Deleted
// record, and the trail keeps the first of the two, the one that names the
// actor. A review is a claim anyone who can reach the port could make, so
// the handler believes only what the API server still vouches for: the
// object is live, with the UID and resourceVersion the review shows, a key
// keymint minted, and the user it names may delete it (a
// SubjectAccessReview).
package deletions

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/audit"
	"github.com/keymint/keymint/internal/keysecret"
)

// Path is where the API server sends the reviews (the webhook's
// clientConfig.service.path).
const Path = "/admission/deletions"

// maxReview bounds a review's body: an APIKey or a Secret, as the API
// server bounds them, and the envelope.
const maxReview = 4 << 20

// Handler answers the deletion webhook's AdmissionReviews.
type Handler struct {
	// Live reads APIKeys and Secrets from the API server: a review is
	// checked against what is stored now, not a cache.
	Live client.Reader
	// Reviews creates SubjectAccessReviews.
	Reviews client.Writer
	Signer  *keysecret.Signer
	// Trail takes the records (durable when Write returns); Echo too,
	// best effort (stdout).
	Trail, Echo audit.Writer
	Clock       clock.PassiveClock

	// self is the manager's own username: its deletes (a revocation, a
	// Secret replaced) are the controller's, which records them itself.
	self atomic.Pointer[string]
}

// ServeHTTP allows every review, after recording what it shows if the
// API server vouches for it.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	review := &admissionv1.AdmissionReview{}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxReview))
	if err == nil {
		err = json.Unmarshal(body, review)
	}
	if err != nil || review.Request == nil {
		http.Error(w, "expected an admission.k8s.io/v1 AdmissionReview", http.StatusBadRequest)
		return
	}
	req := review.Request
	if rec, ok := h.claim(r.Context(), req); ok {
		if err := h.Trail.Write([]audit.Record{rec}); err != nil {
			// The controller still records the deletion, with no actor.
			log.FromContext(r.Context()).Error(err, "recording who deleted", "action", rec.Action, "namespace", rec.Namespace, "apikey", rec.Name)
		} else if h.Echo != nil {
			_ = h.Echo.Write([]audit.Record{rec})
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(&admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: admissionv1.SchemeGroupVersion.String(), Kind: "AdmissionReview"},
		Response: &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true},
	})
}

// claim is the record a review amounts to, if the API server vouches for
// it.
func (h *Handler) claim(ctx context.Context, req *admissionv1.AdmissionRequest) (audit.Record, bool) {
	var deleted func(context.Context, *admissionv1.AdmissionRequest) (audit.Record, bool)
	switch req.Resource {
	case apikeys:
		deleted = h.apiKeyDeleted
	case secrets:
		deleted = h.secretDeleted
	}
	if deleted == nil || req.Operation != admissionv1.Delete || (req.DryRun != nil && *req.DryRun) || req.SubResource != "" ||
		req.UserInfo.Username == h.selfName(ctx) {
		return audit.Record{}, false
	}
	rec, ok := deleted(ctx, req)
	if !ok || !h.mayDelete(ctx, req) {
		return audit.Record{}, false
	}
	rec.Time = h.Clock.Now().UTC()
	rec.Actor = audit.Actor{Username: req.UserInfo.Username, Groups: req.UserInfo.Groups}
	// The admission request names no audit ID of the API server's.
	rec.AuditID = rec.ID
	return rec, true
}

var (
	apikeys = metav1.GroupVersionResource{Group: keymintv1alpha1.GroupVersion.Group, Version: keymintv1alpha1.GroupVersion.Version, Resource: "apikeys"}
	secrets = metav1.GroupVersionResource{Version: "v1", Resource: "secrets"}
)

// apiKeyDeleted is the Deleted record of a live APIKey's first deletion,
// with the controller's record's ID.
func (h *Handler) apiKeyDeleted(ctx context.Context, req *admissionv1.AdmissionRequest) (audit.Record, bool) {
	key := &keymintv1alpha1.APIKey{}
	if !h.live(ctx, req, key) || key.DeletionTimestamp != nil {
		return audit.Record{}, false
	}
	return audit.Record{
		ID:     audit.KeyRecordID(string(key.UID), keymintv1alpha1.ReasonDeleted, ""),
		Action: audit.ActionDeleted, Namespace: key.Namespace, Name: key.Name, UID: string(key.UID),
		User: key.Spec.User, KeyID: key.Status.KeyID,
		Message: fmt.Sprintf("%s deleted the APIKey; key %s of user %s is revoked", req.UserInfo.Username, key.Status.KeyID, key.Spec.User),
	}, true
}

// secretDeleted is the record of the deletion of a live APIKey's Secret,
// one Secret keymint minted for it: the controller issues a new key (its
// own Reissued record names that one).
func (h *Handler) secretDeleted(ctx context.Context, req *admissionv1.AdmissionRequest) (audit.Record, bool) {
	secret := &corev1.Secret{}
	if !h.live(ctx, req, secret) || secret.DeletionTimestamp != nil {
		return audit.Record{}, false
	}
	ref := metav1.GetControllerOfNoCopy(secret)
	if ref == nil || ref.Kind != "APIKey" || ref.APIVersion != keymintv1alpha1.GroupVersion.String() {
		return audit.Record{}, false
	}
	key := &keymintv1alpha1.APIKey{}
	// A Secret deleted with its APIKey is part of that deletion.
	if err := h.Live.Get(ctx, client.ObjectKey{Namespace: secret.Namespace, Name: ref.Name}, key); err != nil ||
		key.UID != ref.UID || key.DeletionTimestamp != nil {
		return audit.Record{}, false
	}
	in, err := h.Signer.Verify(secret, key)
	if err != nil {
		return audit.Record{}, false
	}
	return audit.Record{
		ID:     audit.KeyRecordID(string(key.UID), keymintv1alpha1.ReasonReissued, "deleted-secret-"+string(secret.UID)),
		Action: audit.ActionReissued, Namespace: key.Namespace, Name: key.Name, UID: string(key.UID),
		User: key.Spec.User, KeyID: in.KeyID,
		Message: fmt.Sprintf("%s deleted the key's Secret %s (key %s); the controller issues a new key", req.UserInfo.Username, secret.Name, in.KeyID),
	}, true
}

// selfName is the manager's username, asked once of the API server.
func (h *Handler) selfName(ctx context.Context) string {
	if name := h.self.Load(); name != nil {
		return *name
	}
	review := &authenticationv1.SelfSubjectReview{}
	if err := h.Reviews.Create(ctx, review); err != nil {
		return ""
	}
	h.self.Store(&review.Status.UserInfo.Username)
	return review.Status.UserInfo.Username
}

// live reads the object the review is about into obj, and reports whether
// the API server holds it now as the review shows it: same UID, same
// resourceVersion. A review made up, or replayed after a change, fails.
func (h *Handler) live(ctx context.Context, req *admissionv1.AdmissionRequest, obj client.Object) bool {
	old := &metav1.PartialObjectMetadata{}
	if len(req.OldObject.Raw) == 0 || json.Unmarshal(req.OldObject.Raw, old) != nil {
		return false
	}
	if err := h.Live.Get(ctx, client.ObjectKey{Namespace: req.Namespace, Name: req.Name}, obj); err != nil {
		return false
	}
	return old.UID != "" && obj.GetUID() == old.UID && obj.GetResourceVersion() == old.ResourceVersion
}

// mayDelete asks the API server whether the user the review names may
// delete the object: a review naming someone who could not have done it
// is not believed.
func (h *Handler) mayDelete(ctx context.Context, req *admissionv1.AdmissionRequest) bool {
	extra := map[string]authorizationv1.ExtraValue{}
	for k, v := range req.UserInfo.Extra {
		extra[k] = authorizationv1.ExtraValue(v)
	}
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: req.UserInfo.Username, Groups: req.UserInfo.Groups, UID: req.UserInfo.UID, Extra: extra,
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: req.Namespace, Verb: "delete", Group: req.Resource.Group, Version: req.Resource.Version,
			Resource: req.Resource.Resource, Name: req.Name,
		},
	}}
	if err := h.Reviews.Create(ctx, sar); err != nil {
		log.FromContext(ctx).Error(err, "checking a deletion's actor")
		return false
	}
	return sar.Status.Allowed
}
