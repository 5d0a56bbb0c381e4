package auditserver_test

import (
	"context"
	"net/http"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keymint/keymint/internal/audit"
	"github.com/keymint/keymint/internal/testenv"
)

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// withAuditID is a client acting as user whose every request carries the
// Audit-ID header id, which kube-apiserver takes from the client.
func withAuditID(t *testing.T, id, user string, groups ...string) client.Client {
	t.Helper()
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: append([]string{"system:authenticated"}, groups...)}
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
			req = req.Clone(req.Context())
			req.Header.Set("Audit-ID", id)
			return rt.RoundTrip(req)
		})
	})
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestAClientChosenAuditIDHidesNothing: requests that reuse the audit ID
// of an earlier record about the same key (the client sets it) are each
// recorded: a refused read, a read, and the deletion of the key.
func TestAClientChosenAuditIDHidesNothing(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	ctx := context.Background()
	log := testenv.OpenLog(t)
	startManager(t, log, nil)
	ns := newNamespace(t)
	key := issue(t, ns, "target", userIn(ns, "alice"))
	const id = "3b0c2a6e-0000-4000-8000-000000000001"
	name := client.ObjectKey{Namespace: ns, Name: key.SecretNameOrDefault()}

	err := withAuditID(t, id, userIn(ns, "mallory")).Get(ctx, name, &corev1.Secret{})
	g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "%v", err)
	g.Eventually(func() []audit.Record { return testenv.Records(t, log, ns, audit.ActionViewDenied) }, within).Should(HaveLen(1))

	g.Expect(withAuditID(t, id, userIn(ns, "erin"), holders).Get(ctx, name, &corev1.Secret{})).To(Succeed())
	g.Expect(withAuditID(t, id, userIn(ns, "alice"), holders).Delete(ctx, key)).To(Succeed())
	g.Eventually(func(g Gomega) {
		viewed := testenv.Records(t, log, ns, audit.ActionViewed)
		g.Expect(viewed).To(HaveLen(1), "the read that reused the audit ID")
		g.Expect(viewed[0].Actor.Username).To(Equal(userIn(ns, "erin")))
		g.Expect(viewed[0].AuditID).To(Equal(id))
		g.Expect(actorsOf(t, log, ns, audit.ActionDeleted)).To(ContainElement(userIn(ns, "alice")), "the deletion that reused the audit ID")
	}, within).Should(Succeed())
}

// TestDryRunsAreNotRecorded: a server-side dry run of a delete, of an
// APIKey or of its Secret, does nothing and is recorded as nothing.
func TestDryRunsAreNotRecorded(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	ctx := context.Background()
	log := testenv.OpenLog(t)
	startManager(t, log, nil)
	ns := newNamespace(t)
	alice := userIn(ns, "alice")
	key := issue(t, ns, "kept", alice)
	admin := as(t, alice, holders)
	secret := &corev1.Secret{}
	g.Expect(admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: key.SecretNameOrDefault()}, secret)).To(Succeed())
	g.Expect(admin.Delete(ctx, key.DeepCopy(), client.DryRunAll)).To(Succeed())
	g.Expect(admin.Delete(ctx, secret.DeepCopy(), client.DryRunAll)).To(Succeed())
	// A read by someone else after them: the API server sends its events
	// in order, so once that read is on file, so would the dry runs be.
	erin := userIn(ns, "erin")
	g.Expect(as(t, erin, holders).Get(ctx, client.ObjectKeyFromObject(secret), &corev1.Secret{})).To(Succeed())
	g.Eventually(func() []string { return actorsOf(t, log, ns, audit.ActionViewed) }, within).Should(ContainElement(erin))
	g.Expect(testenv.Records(t, log, ns, audit.ActionDeleted)).To(BeEmpty(), "a dry-run delete of the APIKey was recorded")
	g.Expect(testenv.Records(t, log, ns, audit.ActionReissued)).To(BeEmpty(), "a dry-run delete of the Secret was recorded")
	// The same delete, for real, is recorded.
	g.Expect(admin.Delete(ctx, key.DeepCopy())).To(Succeed())
	g.Eventually(func() []string { return actorsOf(t, log, ns, audit.ActionDeleted) }, within).Should(ContainElement(alice))
}
