package auditapi_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	auditv1alpha1 "github.com/keymint/keymint/api/audit/v1alpha1"
	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/app"
	"github.com/keymint/keymint/internal/audit"
	"github.com/keymint/keymint/internal/auditstore"
	"github.com/keymint/keymint/internal/testenv"
)

// TestTheTrailOutlivesTheReplicaThatWroteIt keeps the trail in the API
// server (--audit-store=api), with no audit log anywhere: a reveal
// acknowledged by replica A is read through replica B after A is gone,
// once, though both wrote the key's records.
func TestTheTrailOutlivesTheReplicaThatWroteIt(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	ctx := context.Background()
	inTheAPIServer := func(o *app.Options) { o.AuditStore = app.AuditStoreAPI }
	stopA := startManager(t, nil, nil, inTheAPIServer)

	ns := newNamespace(t)
	bind(t, ns, "keymint-user", "dora")
	dora := clientAs(t, "dora")
	key := activeKey(t, dora, ns, "dora-key", "dora", keymintv1alpha1.Expiration{Never: new(true)})
	got := reveal(ns, key.Name)
	g.Expect(dora.Create(ctx, got)).To(Succeed())
	secret := &corev1.Secret{}
	g.Expect(env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: key.Status.SecretName}, secret)).To(Succeed())
	g.Expect(got.Status.Key).To(Equal(string(secret.Data[keymintv1alpha1.DataKey])))
	stopA()

	startManager(t, nil, nil, inTheAPIServer)
	auditor := clientAs(t, "system:serviceaccount:keymint-system:auditor", "system:serviceaccounts")
	var actions []string
	g.Eventually(func(g Gomega) {
		list := &auditv1alpha1.AuditRecordList{}
		g.Expect(auditor.List(ctx, list, client.InNamespace(ns))).To(Succeed())
		actions = nil
		for _, r := range list.Items {
			actions = append(actions, r.Action+" "+r.Actor.Username)
		}
		g.Expect(actions).To(ContainElement("Viewed dora"))
	}).Should(Succeed())
	g.Expect(actions).To(ConsistOf("Issued unknown", "Viewed dora"), "each record once, though replica B passed over the key again")
	viewed := &auditv1alpha1.AuditRecordList{}
	g.Expect(auditor.List(ctx, viewed, client.InNamespace(ns), client.MatchingFields{"action": "Viewed"})).To(Succeed())
	g.Expect(viewed.Items).To(HaveLen(1))
	g.Expect(viewed.Items[0].KeyID).To(Equal(key.Status.KeyID))
	one := &auditv1alpha1.AuditRecord{}
	g.Expect(auditor.Get(ctx, client.ObjectKeyFromObject(&viewed.Items[0]), one)).To(Succeed())
	g.Expect(one.Actor.Username).To(Equal("dora"))
	g.Expect(auditor.Get(ctx, client.ObjectKey{Namespace: "default", Name: viewed.Items[0].Name}, one)).NotTo(Succeed(),
		"a record is served in its APIKey's namespace only")
}

// TestRetentionDeletesWholeDaysPastIt stores records of three days and
// prunes at a time that puts the oldest past retention: that day goes,
// whoever wrote how many records; a record stored twice is one entry.
func TestRetentionDeletesWholeDaysPastIt(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	ctx := context.Background()
	store := &auditstore.Store{Client: env.Client, Namespace: newNamespace(t)}
	day := func(d int) time.Time { return time.Date(2026, 3, d, 12, 0, 0, 0, time.UTC) }
	var records []audit.Record
	for d := 1; d <= 3; d++ {
		for i := range 3 {
			records = append(records, audit.Record{ID: fmt.Sprintf("test/%d/%d", d, i), Time: day(d), Action: audit.ActionViewDenied, Namespace: "team-a"})
		}
	}
	fresh, err := store.Append(records)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(fresh).To(HaveLen(9))
	again, err := store.Append(records[:2])
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(again).To(BeEmpty(), "a record stored again is not stored twice")

	r := &auditstore.Retention{Store: store, Keep: 48 * time.Hour}
	// Two days before 4 March 13:00 is 2 March 13:00: 1 March is wholly
	// past it, 2 March is not (a record is kept at least Keep).
	g.Expect(r.Prune(ctx, day(4).Add(time.Hour))).To(Succeed())
	left, _, err := store.List(ctx, "team-a", labels.Everything(), 100, "")
	g.Expect(err).NotTo(HaveOccurred())
	var days []int
	for _, rec := range left {
		days = append(days, rec.Time.Day())
	}
	g.Expect(days).To(ConsistOf(2, 2, 2, 3, 3, 3))
}
