package controllers

import (
	"errors"
	"strings"
	"sync"
	"testing"

	. "github.com/onsi/gomega"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/audit"
	"github.com/keymint/keymint/internal/testenv"
)

// flakySink refuses its first writes, as a full disk does, then keeps
// what it is given.
type flakySink struct {
	mu       sync.Mutex
	refusals int
	records  []audit.Record
}

func (s *flakySink) Write(records []audit.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refusals > 0 {
		s.refusals--
		return errors.New("no space left on device")
	}
	s.records = append(s.records, records...)
	return nil
}

func (s *flakySink) written(action audit.Action, name string) []audit.Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []audit.Record
	for _, r := range s.records {
		if r.Action == action && r.Name == name {
			out = append(out, r)
		}
	}
	return out
}

// TestLifecycleRecordsSurviveAFailingSink: while the audit file refuses
// writes, the key is not reported Active and stdout still gets the record;
// once the file takes it, the key is Active and its Issued record is on
// file once, with the ID it had on stdout.
func TestLifecycleRecordsSurviveAFailingSink(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	file := &flakySink{refusals: 3}
	stdout := &syncBuffer{}
	startManager(t, managerOptions{audit: audit.Multi{file, &audit.Lines{W: stdout}}})
	ns := newNamespace(t)
	key := newKey(ns, "durable", userIn(ns, "kim"), never())
	g.Expect(k8sClient.Create(ctx, key)).To(Succeed())

	g.Eventually(func(g Gomega) {
		got := getKey(g, key)
		g.Expect(got.Status.Phase).To(Equal(keymintv1alpha1.PhaseActive))
		// Whenever the key shows Active, its record is on file.
		g.Expect(file.written(audit.ActionIssued, key.Name)).To(HaveLen(1))
	}).Should(Succeed())
	issued := file.written(audit.ActionIssued, key.Name)[0]
	g.Expect(issued.ID).To(Equal("keymint/" + string(getKey(g, key).UID) + "/Issued/" + getKey(g, key).Status.KeyID))
	lines := strings.Count(stdout.String(), `"id":"`+issued.ID+`"`)
	g.Expect(lines).To(BeNumerically(">=", 4), "each refused write still reached stdout, with the same ID")
	g.Expect(file.refusals).To(BeZero())
}
