package auditserver_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/audit"
	"github.com/keymint/keymint/internal/auditserver"
	"github.com/keymint/keymint/internal/testenv"
)

// Within says how soon the API server's batches (sent every second) arrive.
const within = 15 * time.Second

func TestViewsAreRecordedWithTheActor(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	ctx := context.Background()
	log := testenv.OpenLog(t)
	// Every view its own record: this test is about what one says.
	startManager(t, log, nil, func(s *auditserver.Server) { s.RepeatWindow = time.Nanosecond })
	ns := newNamespace(t)
	alice := userIn(ns, "alice")
	first := issue(t, ns, "first", alice)
	second := issue(t, ns, "second", alice)
	reader := as(t, alice, holders, "developers")

	// A get is one Viewed record naming alice, her groups, IP and agent.
	var s corev1.Secret
	g.Expect(reader.Get(ctx, client.ObjectKey{Namespace: ns, Name: first.SecretNameOrDefault()}, &s)).To(Succeed())
	g.Eventually(func() []audit.Record { return testenv.Records(t, log, ns, audit.ActionViewed) }, within).Should(HaveLen(1))
	viewed := testenv.Records(t, log, ns, audit.ActionViewed)[0]
	g.Expect(viewed.Actor.Username).To(Equal(alice))
	g.Expect(viewed.Actor.Groups).To(ContainElement("developers"))
	g.Expect(viewed.Name).To(Equal("first"))
	g.Expect(viewed.UID).To(Equal(string(first.UID)))
	g.Expect(viewed.User).To(Equal(first.Spec.User))
	g.Expect(viewed.KeyID).To(Equal(first.Status.KeyID))
	g.Expect(viewed.SourceIPs).NotTo(BeEmpty())
	g.Expect(viewed.UserAgent).NotTo(BeEmpty())
	g.Expect(viewed.AuditID).NotTo(BeEmpty())

	// A list that cannot return a key (its selector) is no view; a list
	// of the namespace is a view of both keys.
	var none corev1.SecretList
	g.Expect(reader.List(ctx, &none, client.InNamespace(ns), client.MatchingLabels{"app": "other"})).To(Succeed())
	var all corev1.SecretList
	g.Expect(reader.List(ctx, &all, client.InNamespace(ns))).To(Succeed())
	g.Eventually(func() []audit.Record { return testenv.Records(t, log, ns, audit.ActionViewed) }, within).Should(HaveLen(3))
	listed := testenv.Records(t, log, ns, audit.ActionViewed)[1:]
	g.Expect([]string{listed[0].Name, listed[1].Name}).To(ConsistOf("first", "second"))
	g.Expect(listed[0].AuditID).To(Equal(listed[1].AuditID))

	// A field selector naming one Secret is a view of that key only.
	g.Expect(reader.List(ctx, &all, client.InNamespace(ns),
		client.MatchingFields{"metadata.name": second.SecretNameOrDefault()})).To(Succeed())
	g.Eventually(func() []audit.Record { return testenv.Records(t, log, ns, audit.ActionViewed) }, within).Should(HaveLen(4))
	g.Expect(testenv.Records(t, log, ns, audit.ActionViewed)[3].Name).To(Equal("second"))

	// A kubelet's read is a mount.
	node := as(t, "system:node:node-1", "system:nodes", holders)
	g.Expect(node.Get(ctx, client.ObjectKey{Namespace: ns, Name: first.SecretNameOrDefault()}, &s)).To(Succeed())
	g.Eventually(func() []audit.Record { return testenv.Records(t, log, ns, audit.ActionMounted) }, within).Should(HaveLen(1))
	g.Expect(testenv.Records(t, log, ns, audit.ActionMounted)[0].Actor.Username).To(Equal("system:node:node-1"))

	// An administrator without access to Secrets is refused, and that is
	// on record.
	err := as(t, "mallory").Get(ctx, client.ObjectKey{Namespace: ns, Name: first.SecretNameOrDefault()}, &s)
	g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "%v", err)
	g.Eventually(func() []audit.Record { return testenv.Records(t, log, ns, audit.ActionViewDenied) }, within).Should(HaveLen(1))
	denied := testenv.Records(t, log, ns, audit.ActionViewDenied)[0]
	g.Expect(denied.Actor.Username).To(Equal("mallory"))
	g.Expect(denied.Name).To(Equal("first"))

	// Views and denied views are mirrored as Events on the APIKey.
	g.Eventually(func(g Gomega) {
		var list eventsv1.EventList
		g.Expect(env.Client.List(ctx, &list, client.InNamespace(ns))).To(Succeed())
		reasons := map[string]string{}
		for _, e := range list.Items {
			if e.Regarding.Name == "first" {
				reasons[e.Reason] = e.Note
			}
		}
		g.Expect(reasons).To(HaveKeyWithValue("Viewed", ContainSubstring(alice+" read the key's Secret (get)")))
		g.Expect(reasons).To(HaveKeyWithValue("ViewDenied", ContainSubstring("mallory was refused (403) a get")))
	}, within).Should(Succeed())

	// No view is recorded twice, and nothing else happened.
	g.Consistently(func() []audit.Record { return testenv.Records(t, log, ns, audit.ActionViewed) }, 2*time.Second).Should(HaveLen(4))
}

func TestDeletionsNameTheActor(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	ctx := context.Background()
	log := testenv.OpenLog(t)
	startManager(t, log, nil)
	ns := newNamespace(t)
	alice := userIn(ns, "alice")
	revoked := issue(t, ns, "revoked", alice)
	rotated := issue(t, ns, "rotated", alice)
	reader := as(t, alice, holders)

	// Deleting a key's Secret revokes that key; the controller reissues.
	g.Expect(reader.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: rotated.SecretNameOrDefault()}})).To(Succeed())
	g.Eventually(func(g Gomega) {
		reissued := testenv.Records(t, log, ns, audit.ActionReissued)
		actors := map[string]string{}
		for _, r := range reissued {
			actors[r.Actor.Username] = r.KeyID
		}
		g.Expect(actors).To(HaveKeyWithValue(alice, rotated.Status.KeyID), "the revoked key is named")
		g.Expect(actors).To(HaveKey(audit.UnknownActor), "the controller's own record")
	}, within).Should(Succeed())

	g.Expect(reader.Delete(ctx, revoked)).To(Succeed())
	g.Eventually(func(g Gomega) {
		var actors []string
		for _, r := range testenv.Records(t, log, ns, audit.ActionDeleted) {
			g.Expect(r.Name).To(Equal("revoked"))
			g.Expect(r.User).To(Equal(revoked.Spec.User))
			g.Expect(r.KeyID).To(Equal(revoked.Status.KeyID))
			actors = append(actors, r.Actor.Username)
		}
		g.Expect(actors).To(ConsistOf(alice, audit.UnknownActor))
	}, within).Should(Succeed())
}

// TestRepeatedViewsAreOneRecordWithACount: an owner who reads her own key
// 500 times makes one Viewed record at once and, when the window closes,
// one more that counts the other 499: she cannot push other records out of
// a bounded trail by reading her key.
func TestRepeatedViewsAreOneRecordWithACount(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	ctx := context.Background()
	log := testenv.OpenLog(t)
	clk := clocktesting.NewFakeClock(time.Now().Add(time.Hour))
	startManager(t, log, nil, func(s *auditserver.Server) { s.Clock = clk })
	ns := newNamespace(t)
	alice := userIn(ns, "alice")
	key := issue(t, ns, "busy", alice)
	reader := as(t, alice, holders)
	const views = 500
	for range views {
		var s corev1.Secret
		g.Expect(reader.Get(ctx, client.ObjectKey{Namespace: ns, Name: key.SecretNameOrDefault()}, &s)).To(Succeed())
	}
	// Then a view by someone else, whose record comes in a later batch:
	// once it is on file, so is every batch of alice's views.
	var s corev1.Secret
	g.Expect(as(t, userIn(ns, "bob"), holders).Get(ctx, client.ObjectKey{Namespace: ns, Name: key.SecretNameOrDefault()}, &s)).To(Succeed())
	byActor := func(actor string) []audit.Record {
		var out []audit.Record
		for _, r := range testenv.Records(t, log, ns, audit.ActionViewed) {
			if r.Actor.Username == actor {
				out = append(out, r)
			}
		}
		return out
	}
	g.Eventually(func() []audit.Record { return byActor(userIn(ns, "bob")) }, within).Should(HaveLen(1))
	first := byActor(alice)
	g.Expect(first).To(HaveLen(1), "alice's repeated views were written one by one")
	g.Expect(first[0].Repeats).To(BeNil())

	g.Eventually(func(g Gomega) {
		clk.Step(auditserver.RepeatWindow)
		got := byActor(alice)
		g.Expect(got).To(HaveLen(2))
		g.Expect(got[1].Repeats).NotTo(BeNil())
		g.Expect(got[1].Repeats.Count).To(Equal(views - 1))
		g.Expect(got[1].KeyID).To(Equal(key.Status.KeyID))
		g.Expect(got[1].Name).To(Equal("busy"))
	}, time.Minute, 500*time.Millisecond).Should(Succeed())
}

// failingTrail fails its first write of a view, as a full disk would,
// then writes.
type failingTrail struct {
	audit.Writer
	failed bool
	mu     sync.Mutex
}

func (f *failingTrail) Write(records []audit.Record) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.failed && hasView(records) {
		f.failed = true
		return errors.New("disk full")
	}
	return f.Writer.Write(records)
}

func TestABatchNotWrittenIsSentAgain(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	ctx := context.Background()
	log := testenv.OpenLog(t)
	trail := &failingTrail{Writer: log}
	startManager(t, nil, trail)
	ns := newNamespace(t)
	alice := userIn(ns, "alice")
	key := issue(t, ns, "retried", alice)
	var s corev1.Secret
	g.Expect(as(t, alice, holders).Get(ctx, client.ObjectKey{Namespace: ns, Name: key.SecretNameOrDefault()}, &s)).To(Succeed())
	g.Eventually(func() []audit.Record { return testenv.Records(t, log, ns, audit.ActionViewed) }, within).Should(HaveLen(1))
	g.Expect(trail.failed).To(BeTrue())
}

// hasView reports whether records hold a view: the audit webhook's batch,
// not one of the controller's records, which share the trail.
func hasView(records []audit.Record) bool {
	return slices.ContainsFunc(records, func(r audit.Record) bool { return r.Action == audit.ActionViewed })
}

// stuckTrail holds the first batch with a view until released, then fails
// it: a manager killed before it wrote. It drops the controller's records.
type stuckTrail struct {
	received chan struct{}
	release  chan struct{}
	once     sync.Once
}

func (s *stuckTrail) Write(records []audit.Record) error {
	if !hasView(records) {
		return nil
	}
	s.once.Do(func() { close(s.received) })
	<-s.release
	return errors.New("killed")
}

func TestAManagerKilledBeforeWritingLosesNothing(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	alice := userIn(ns, "alice")
	stuck := &stuckTrail{received: make(chan struct{}), release: make(chan struct{})}
	defer close(stuck.release)
	kill := startManager(t, nil, stuck)
	key := issue(t, ns, "crash", alice)
	var s corev1.Secret
	g.Expect(as(t, alice, holders).Get(ctx, client.ObjectKey{Namespace: ns, Name: key.SecretNameOrDefault()}, &s)).To(Succeed())
	g.Eventually(stuck.received, within).Should(BeClosed())
	kill()

	log := testenv.OpenLog(t)
	startManager(t, log, nil)
	g.Eventually(func() []audit.Record { return testenv.Records(t, log, ns, audit.ActionViewed) }, within).Should(HaveLen(1))
	g.Expect(testenv.Records(t, log, ns, audit.ActionViewed)[0].Actor.Username).To(Equal(alice))
}

func TestTheSameBatchTwiceIsRecordedOnce(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	log := testenv.OpenLog(t)
	startManager(t, log, nil)
	ns := newNamespace(t)
	alice := userIn(ns, "alice")
	key := issue(t, ns, "twice", alice)
	batch := auditv1.EventList{TypeMeta: metav1.TypeMeta{Kind: "EventList", APIVersion: "audit.k8s.io/v1"}, Items: []auditv1.Event{{
		AuditID:        types.UID("6d1c6c57-4c53-4a5e-9a53-000000000001"),
		Stage:          auditv1.StageResponseComplete,
		RequestURI:     "/api/v1/namespaces/" + ns + "/secrets/" + key.SecretNameOrDefault(),
		Verb:           "get",
		User:           authenticationv1.UserInfo{Username: "carol"},
		ObjectRef:      &auditv1.ObjectReference{Resource: "secrets", Namespace: ns, Name: key.SecretNameOrDefault(), APIVersion: "v1"},
		ResponseStatus: &metav1.Status{Code: 200},
		StageTimestamp: metav1.NewMicroTime(time.Now()),
	}}}
	body, err := json.Marshal(batch)
	g.Expect(err).NotTo(HaveOccurred())
	token, err := os.ReadFile(env.Audit.TokenFile)
	g.Expect(err).NotTo(HaveOccurred())
	c := webhookClient(t)
	post := func(token string) int {
		req, err := http.NewRequest(http.MethodPost, "https://"+env.Audit.Addr+auditserver.EventsPath, bytes.NewReader(body))
		g.Expect(err).NotTo(HaveOccurred())
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		var resp *http.Response
		g.Eventually(func() (err error) { resp, err = c.Do(req); return err }).Should(Succeed())
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	g.Expect(post(string(token))).To(Equal(http.StatusOK))
	g.Expect(post(string(token))).To(Equal(http.StatusOK))
	g.Expect(testenv.Records(t, log, ns, audit.ActionViewed)).To(HaveLen(1))

	// Anybody else is refused.
	g.Expect(post("")).To(Equal(http.StatusUnauthorized))
	g.Expect(post("not-" + string(token))).To(Equal(http.StatusUnauthorized))
	g.Expect(managerLogs.String()).To(ContainSubstring("refused an audit request"))
	g.Expect(managerLogs.String()).NotTo(ContainSubstring(string(token)))
}

// webhookClient trusts the audit server's certificate.
func webhookClient(t *testing.T) *http.Client {
	t.Helper()
	ca, err := os.ReadFile(env.Audit.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
}

func TestNoKeyInRecordsEventsOrLogs(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	ctx := context.Background()
	log := testenv.OpenLog(t)
	var stdout testenv.Buffer
	startManager(t, log, &audit.Lines{W: &stdout})
	ns := newNamespace(t)
	alice := userIn(ns, "alice")
	key := issue(t, ns, "secret", alice)
	var s corev1.Secret
	g.Expect(as(t, alice, holders).Get(ctx, client.ObjectKey{Namespace: ns, Name: key.SecretNameOrDefault()}, &s)).To(Succeed())
	g.Expect(as(t, alice, holders).Delete(ctx, key)).To(Succeed())
	g.Eventually(func() []audit.Record { return testenv.Records(t, log, ns, audit.ActionDeleted) }, within).Should(HaveLen(2))
	value := string(s.Data[keymintv1alpha1.DataKey])
	g.Expect(value).To(HavePrefix("kmk_"))

	var file bytes.Buffer
	g.Expect(audit.Export(log, audit.Filter{}, audit.FormatJSON, &file)).To(Succeed())
	var events eventsv1.EventList
	g.Expect(env.Client.List(ctx, &events, client.InNamespace(ns))).To(Succeed())
	eventText, err := json.Marshal(events)
	g.Expect(err).NotTo(HaveOccurred())
	for what, text := range map[string]string{"audit log": file.String(), "stdout": stdout.String(), "events": string(eventText), "manager logs": managerLogs.String()} {
		g.Expect(strings.Contains(text, value)).To(BeFalse(), "the key is in the %s", what)
	}
	g.Expect(stdout.String()).To(ContainSubstring(`{"audit":{`))
}
