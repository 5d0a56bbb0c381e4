package controllers_test

import (
	"strings"
	"testing"

	. "github.com/onsi/gomega"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/audit"
	"github.com/keymint/keymint/internal/testenv"
)

// TestLifecycleRecordsSurviveAFailingSink: while the audit file refuses
// writes, the key is not reported Active and stdout still gets the record;
// once the file takes it, the key is Active and its Issued record is on
// file once, with the ID it had on stdout.
func TestLifecycleRecordsSurviveAFailingSink(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	file := &testenv.Trail{Refusals: 3}
	stdout := &testenv.Buffer{}
	startManager(t, managerOptions{audit: audit.Multi{file, &audit.Lines{W: stdout}}})
	ns := newNamespace(t)
	key := newKey(ns, "durable", userIn(ns, "kim"), never())
	g.Expect(k8sClient.Create(ctx, key)).To(Succeed())

	g.Eventually(func(g Gomega) {
		got := getKey(g, key)
		g.Expect(got.Status.Phase).To(Equal(keymintv1alpha1.PhaseActive))
		// Whenever the key shows Active, its record is on file.
		g.Expect(file.Of(audit.ActionIssued, key.Name)).To(HaveLen(1))
	}).Should(Succeed())
	issued := file.Of(audit.ActionIssued, key.Name)[0]
	g.Expect(issued.ID).To(Equal("keymint/" + string(getKey(g, key).UID) + "/Issued/" + getKey(g, key).Status.KeyID))
	lines := strings.Count(stdout.String(), `"id":"`+issued.ID+`"`)
	g.Expect(lines).To(BeNumerically(">=", 4), "each refused write still reached stdout, with the same ID")
	g.Expect(file.Refused()).To(BeZero())
}
