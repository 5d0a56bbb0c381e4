package auditapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	auditv1alpha1 "github.com/keymint/keymint/api/audit/v1alpha1"
	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/audit"
	"github.com/keymint/keymint/internal/testenv"
)

func reveal(ns, name string) *auditv1alpha1.APIKeyReveal {
	return &auditv1alpha1.APIKeyReveal{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns},
		Spec:       auditv1alpha1.APIKeyRevealSpec{Name: name},
	}
}

// TestRevealGivesTheKeyToItsOwnerOnly, on a control plane without the
// audit webhook: alice gets her key through the API server, and her view
// is on the trail first; bob, who may create reveals, and a cluster
// administrator, who may do anything, get 403 and a ViewDenied record; an
// administrator holding keymint-admin is refused by RBAC; the auditor reads
// all of it as auditrecords; and a trail that cannot take the record
// means no key.
func TestRevealGivesTheKeyToItsOwnerOnly(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	ctx := context.Background()
	log := testenv.OpenLog(t)
	store := &failing{}
	startManager(t, log, store)

	ns := newNamespace(t)
	bind(t, ns, "keymint-user", "alice")
	bind(t, ns, "keymint-user", "bob")
	bind(t, ns, "keymint-admin", "carol")
	months := int32(3)
	alice := clientAs(t, "alice")
	key := activeKey(t, alice, ns, "alice-key", "alice", keymintv1alpha1.Expiration{Months: &months})
	secret := &corev1.Secret{}
	g.Expect(env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: key.Status.SecretName}, secret)).To(Succeed())
	want := string(secret.Data[keymintv1alpha1.DataKey])

	got := reveal(ns, key.Name)
	g.Expect(alice.Create(ctx, got)).To(Succeed())
	g.Expect(got.Status.Key).To(Equal(want))
	g.Expect(got.Status.KeyID).To(Equal(key.Status.KeyID))
	g.Expect(got.Status.ExpiresAt.Time).To(BeTemporally("==", key.Status.ExpiresAt.Time))
	// No cache on the way may keep the answer, which holds the key.
	g.Expect(revealHeaders(t, "alice", ns, key.Name).Values("Cache-Control")).To(ContainElement("no-store"))
	viewed := testenv.Records(t, log, ns, audit.ActionViewed)
	g.Expect(viewed).To(HaveLen(2))
	g.Expect(viewed[0].Actor.Username).To(Equal("alice"))
	g.Expect(viewed[0].KeyID).To(Equal(key.Status.KeyID))

	err := clientAs(t, "bob").Create(ctx, reveal(ns, key.Name))
	g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "bob: %v", err)
	g.Expect(err.Error()).NotTo(ContainSubstring(want))
	err = clientAs(t, "root", "system:masters").Create(ctx, reveal(ns, key.Name))
	g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "a cluster administrator: %v", err)
	err = clientAs(t, "carol").Create(ctx, reveal(ns, key.Name))
	g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "keymint-admin: %v", err)
	denied := testenv.Records(t, log, ns, audit.ActionViewDenied)
	g.Expect(actors(denied)).To(Equal([]string{"bob", "root"}))
	// bob trying again and again is counted, not written each time: the
	// summary comes when his window closes.
	bob := clientAs(t, "bob")
	for range 5 {
		g.Expect(apierrors.IsForbidden(bob.Create(ctx, reveal(ns, key.Name)))).To(BeTrue())
	}
	g.Expect(testenv.Records(t, log, ns, audit.ActionViewDenied)).To(HaveLen(2), "each refusal of one actor was written on its own")

	// The store refusing the record: no key leaves.
	store.on.Store(true)
	refused := reveal(ns, key.Name)
	err = alice.Create(ctx, refused)
	g.Expect(apierrors.IsServiceUnavailable(err)).To(BeTrue(), "a reveal whose record failed: %v", err)
	g.Expect(refused.Status.Key).To(BeEmpty())
	g.Expect(err.Error()).NotTo(ContainSubstring(want))
	store.on.Store(false)
	g.Expect(testenv.Records(t, log, ns, audit.ActionViewed)).To(HaveLen(2), "a reveal that returned no key was recorded as a view")

	// The auditor reads the trail through the API server.
	auditor := clientAs(t, "system:serviceaccount:keymint-system:auditor", "system:serviceaccounts")
	list := &auditv1alpha1.AuditRecordList{}
	g.Expect(auditor.List(ctx, list, client.InNamespace(ns))).To(Succeed())
	var seen []string
	for _, r := range list.Items {
		seen = append(seen, r.Action+" "+r.Actor.Username)
	}
	g.Expect(seen).To(ContainElements("Viewed alice", "ViewDenied bob", "ViewDenied root"))
	g.Expect(seen[0]).To(HavePrefix("Issued "))
	// kubectl get auditrecords: the server's Table.
	raw, err := auditorREST(t).Get().AbsPath("/apis/audit.keymint.io/v1alpha1/namespaces/"+ns+"/auditrecords").
		SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").DoRaw(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	table := &metav1.Table{}
	g.Expect(json.Unmarshal(raw, table)).To(Succeed())
	var columns []string
	for _, c := range table.ColumnDefinitions {
		columns = append(columns, c.Name)
	}
	g.Expect(columns).To(Equal([]string{"Name", "Time", "Action", "Actor", "APIKey", "Key ID", "Message"}))
	g.Expect(table.Rows).To(HaveLen(len(list.Items)))
	g.Expect(table.Rows[1].Cells[2:6]).To(Equal([]any{"Viewed", "alice", key.Name, key.Status.KeyID}))
	only := &auditv1alpha1.AuditRecordList{}
	g.Expect(auditor.List(ctx, only, client.InNamespace(ns), client.MatchingFields{"action": "ViewDenied"})).To(Succeed())
	g.Expect(only.Items).To(HaveLen(2))
	err = alice.List(ctx, &auditv1alpha1.AuditRecordList{}, client.InNamespace(ns))
	g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "a keymint-user reading the trail: %v", err)
	g.Expect(managerLogs.String()).NotTo(ContainSubstring(want), "the key reached the manager's logs")
}

// revealHeaders reveals key ns/name as user through the API server and
// returns the answer's headers.
func revealHeaders(t *testing.T, user, ns, name string) http.Header {
	t.Helper()
	u, err := env.AddUser(envtest.User{Name: user}, env.Config)
	if err != nil {
		t.Fatal(err)
	}
	hc, err := rest.HTTPClientFor(u.Config())
	if err != nil {
		t.Fatal(err)
	}
	body := `{"apiVersion":"audit.keymint.io/v1alpha1","kind":"APIKeyReveal","spec":{"name":"` + name + `"}}`
	resp, err := hc.Post(strings.TrimSuffix(u.Config().Host, "/")+"/apis/audit.keymint.io/v1alpha1/namespaces/"+ns+"/apikeyreveals", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusCreated {
		raw, _ := io.ReadAll(resp.Body)
		t.Fatalf("reveal as %s at %s: %s %s", user, resp.Request.URL, resp.Status, raw)
	}
	return resp.Header
}

func actors(records []audit.Record) []string {
	var out []string
	for _, r := range records {
		out = append(out, r.Actor.Username)
	}
	return out
}

// auditorREST is a REST client of the API server as the auditor.
func auditorREST(t *testing.T) *rest.RESTClient {
	t.Helper()
	u, err := env.AddUser(envtest.User{Name: "system:serviceaccount:keymint-system:auditor", Groups: []string{"system:serviceaccounts"}}, env.Config)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(u.Config())
	if err != nil {
		t.Fatal(err)
	}
	return cs.CoreV1().RESTClient().(*rest.RESTClient)
}

// activeKey creates, as as, an APIKey for user and waits until it is
// Active.
func activeKey(t *testing.T, as client.Client, ns, name, user string, exp keymintv1alpha1.Expiration) *keymintv1alpha1.APIKey {
	t.Helper()
	g := NewWithT(t)
	key := &keymintv1alpha1.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: keymintv1alpha1.APIKeySpec{User: user, Expiration: exp}}
	g.Expect(as.Create(context.Background(), key)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(env.Client.Get(context.Background(), client.ObjectKeyFromObject(key), key)).To(Succeed())
		g.Expect(key.Status.Phase).To(Equal(keymintv1alpha1.PhaseActive))
	}).Should(Succeed())
	return key
}
