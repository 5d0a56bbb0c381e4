package auditapi_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	auditv1alpha1 "github.com/keymint/keymint/api/audit/v1alpha1"
	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/audit"
	"github.com/keymint/keymint/internal/deletions"
	"github.com/keymint/keymint/internal/testenv"
)

// TestDeletionsNameWhoDeleted, on a control plane without the audit
// webhook: a ServiceAccount deletes a key's Secret, then the APIKey, and
// the trail names it for both; the APIKey's deletion is one record, the
// controller's joined with the admission's. A dry run is not recorded, and
// neither is a review sent to keymint by anyone but the API server that
// names someone who may not delete the key, or a key as it no longer is.
func TestDeletionsNameWhoDeleted(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	log := testenv.OpenLog(t)
	startManager(t, log, nil)

	ns := newNamespace(t)
	bind(t, ns, "keymint-user", "alice")
	cleaner := "system:serviceaccount:" + ns + ":cleaner"
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cleaner"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{keymintv1alpha1.GroupVersion.Group}, Resources: []string{"apikeys"}, Verbs: []string{"delete", "delegate"}},
			{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"delete"}},
		},
	}
	g.Expect(env.Client.Create(ctx, role)).To(Succeed())
	g.Expect(env.Client.Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cleaner"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "cleaner"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: "cleaner"}},
	})).To(Succeed())
	sa := clientAs(t, cleaner, "system:serviceaccounts", "system:serviceaccounts:"+ns)
	alice := clientAs(t, "alice")
	never := keymintv1alpha1.Expiration{Never: new(true)}
	first := activeKey(t, alice, ns, "first", "alice", never)
	second := activeKey(t, alice, ns, "second", "alice", never)

	// The ServiceAccount deletes the first key's Secret: the controller
	// issues a new key, and the trail says who revoked the old one.
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: first.Status.SecretName}}
	g.Expect(sa.Delete(ctx, secret)).To(Succeed())
	g.Eventually(func() []audit.Record { return testenv.Records(t, log, ns, audit.ActionReissued) }).Should(ContainElement(And(
		HaveField("Actor.Username", cleaner), HaveField("KeyID", first.Status.KeyID), HaveField("Name", "first"))))

	// ... and then the APIKey: one Deleted record, naming it.
	g.Expect(sa.Delete(ctx, first)).To(Succeed())
	g.Eventually(func() bool {
		return apierrors.IsNotFound(env.Client.Get(ctx, client.ObjectKeyFromObject(first), &keymintv1alpha1.APIKey{}))
	}).Should(BeTrue())
	deleted := deletedOf(t, log, ns, "first")
	g.Expect(deleted).To(HaveLen(1), "the controller's record and the admission's are one")
	g.Expect(deleted[0].Actor.Username).To(Equal(cleaner))
	g.Expect(deleted[0].UID).To(Equal(string(first.UID)))

	// A dry run deletes nothing and is not recorded.
	g.Expect(sa.Delete(ctx, second, client.DryRunAll)).To(Succeed())
	// Reviews sent straight to keymint's port, as anyone on the network
	// could: mallory may not delete the key; alice may, but the review
	// shows the key as it was before a change.
	live := &keymintv1alpha1.APIKey{}
	g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(second), live)).To(Succeed())
	g.Expect(forgeDeletion(t, live, "mallory")).To(Equal(http.StatusOK))
	stale := live.DeepCopy()
	stale.ResourceVersion = first.ResourceVersion
	g.Expect(forgeDeletion(t, stale, "alice")).To(Equal(http.StatusOK))
	g.Expect(deletedOf(t, log, ns, "second")).To(BeEmpty(), "a dry run or a forged review was recorded")

	// alice deletes her own key.
	g.Expect(alice.Delete(ctx, second)).To(Succeed())
	g.Eventually(func() []audit.Record { return deletedOf(t, log, ns, "second") }).Should(HaveLen(1))
	g.Eventually(func() bool {
		return apierrors.IsNotFound(env.Client.Get(ctx, client.ObjectKeyFromObject(second), &keymintv1alpha1.APIKey{}))
	}).Should(BeTrue())
	deleted = deletedOf(t, log, ns, "second")
	g.Expect(deleted).To(HaveLen(1))
	g.Expect(deleted[0].Actor.Username).To(Equal("alice"))

	// The auditor reads the same through the API server: one Deleted
	// record a key, each naming who deleted it.
	auditor := clientAs(t, "system:serviceaccount:keymint-system:auditor", "system:serviceaccounts")
	list := &auditv1alpha1.AuditRecordList{}
	g.Expect(auditor.List(ctx, list, client.InNamespace(ns), client.MatchingFields{"action": "Deleted"})).To(Succeed())
	var actors []string
	for _, r := range list.Items {
		actors = append(actors, r.APIKey+" "+r.Actor.Username)
	}
	g.Expect(actors).To(ConsistOf("first "+cleaner, "second alice"))
}

// deletedOf are the Deleted records of APIKey ns/name.
func deletedOf(t *testing.T, log *audit.File, ns, name string) []audit.Record {
	var out []audit.Record
	for _, r := range testenv.Records(t, log, ns, audit.ActionDeleted) {
		if r.Name == name {
			out = append(out, r)
		}
	}
	return out
}

// forgeDeletion posts to keymint's API port a review of key's deletion
// by username that the API server never sent, and returns the status.
func forgeDeletion(t *testing.T, key *keymintv1alpha1.APIKey, username string) int {
	t.Helper()
	review := &admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       types.UID("forged"),
			Kind:      metav1.GroupVersionKind{Group: "keymint.io", Version: "v1alpha1", Kind: "APIKey"},
			Resource:  metav1.GroupVersionResource{Group: "keymint.io", Version: "v1alpha1", Resource: "apikeys"},
			Namespace: key.Namespace, Name: key.Name, Operation: admissionv1.Delete,
			UserInfo:  authenticationv1.UserInfo{Username: username, Groups: []string{"system:authenticated"}},
			OldObject: runtime.RawExtension{Object: key},
		},
	}
	raw, err := json.Marshal(review)
	if err != nil {
		t.Fatal(err)
	}
	// Anyone can reach the port; nobody else holds the serving CA's trust.
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // the forger does not check whom it talks to
	resp, err := hc.Post("https://"+env.API.Addr()+deletions.Path, "application/json", bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	answer := &admissionv1.AdmissionReview{}
	if err := json.NewDecoder(resp.Body).Decode(answer); err != nil || answer.Response == nil || !answer.Response.Allowed {
		t.Fatalf("the webhook must allow every delete: %v %+v", err, answer.Response)
	}
	return resp.StatusCode
}
