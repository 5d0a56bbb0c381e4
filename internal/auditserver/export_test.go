package auditserver_test

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keymint/keymint/internal/audit"
	"github.com/keymint/keymint/internal/auditserver"
	"github.com/keymint/keymint/internal/testenv"
)

// tokenFor returns a token of a new ServiceAccount in ns, bound to the
// ClusterRole keymint-admin cluster-wide, in ns only, or not at all.
func tokenFor(t *testing.T, ns, name, scope string) string {
	t.Helper()
	ctx := context.Background()
	token, err := env.ServiceAccountToken(ctx, ns, name)
	if err != nil {
		t.Fatal(err)
	}
	subject := rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: name}
	role := rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "keymint-admin"}
	var binding client.Object
	switch scope {
	case "cluster":
		binding = &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: ns + "-" + name}, RoleRef: role, Subjects: []rbacv1.Subject{subject}}
	case "namespace":
		binding = &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, RoleRef: role, Subjects: []rbacv1.Subject{subject}}
	}
	if binding != nil {
		if err := env.Client.Create(ctx, binding); err != nil {
			t.Fatal(err)
		}
	}
	return token
}

func TestExportIsForAuthorisedAdministratorsAndFilters(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	log := testenv.OpenLog(t)
	startManager(t, log, nil)
	ns := newNamespace(t)
	alice, bob := userIn(ns, "alice"), userIn(ns, "bob")
	issue(t, ns, "alices", alice)
	issue(t, ns, "bobs", bob)
	// Records of the test's own, at known times, beside the controller's.
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	g.Expect(log.Write([]audit.Record{
		{Time: t0, Action: audit.ActionViewed, Actor: audit.Actor{Username: alice}, Namespace: ns, Name: "alices", User: alice, AuditID: "v1", Message: "with, a comma"},
		{Time: t0.Add(time.Hour), Action: audit.ActionViewed, Actor: audit.Actor{Username: bob}, Namespace: ns, Name: "bobs", User: bob, AuditID: "v2"},
		{Time: t0.Add(2 * time.Hour), Action: audit.ActionViewDenied, Actor: audit.Actor{Username: "mallory"}, Namespace: ns, Name: "alices", User: alice, AuditID: "v3"},
	})).To(Succeed())

	admin := tokenFor(t, ns, "auditor", "cluster")
	teamAdmin := tokenFor(t, ns, "team-auditor", "namespace")
	nosy := tokenFor(t, ns, "nosy", "")
	c := webhookClient(t)
	export := func(token string, query url.Values) (int, string) {
		req, err := http.NewRequest(http.MethodGet, "https://"+env.Audit.Addr+auditserver.ExportPath+"?"+query.Encode(), nil)
		g.Expect(err).NotTo(HaveOccurred())
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := c.Do(req)
		g.Expect(err).NotTo(HaveOccurred())
		defer func() { _ = resp.Body.Close() }()
		body, err := io.ReadAll(resp.Body)
		g.Expect(err).NotTo(HaveOccurred())
		return resp.StatusCode, string(body)
	}
	decode := func(body string) []audit.Record {
		var out []audit.Record
		dec := json.NewDecoder(strings.NewReader(body))
		for dec.More() {
			var r audit.Record
			g.Expect(dec.Decode(&r)).To(Succeed())
			out = append(out, r)
		}
		return out
	}

	// Filters by namespace, action, user and time, as JSON lines.
	code, body := export(admin, url.Values{"namespace": {ns}, "action": {"Viewed"}})
	g.Expect(code).To(Equal(http.StatusOK), body)
	g.Expect(decode(body)).To(HaveLen(2))
	code, body = export(admin, url.Values{"namespace": {ns}, "user": {alice}})
	g.Expect(code).To(Equal(http.StatusOK), body)
	var actions []audit.Action
	for _, r := range decode(body) {
		actions = append(actions, r.Action)
	}
	g.Expect(actions).To(ConsistOf(audit.ActionIssued, audit.ActionViewed, audit.ActionViewDenied))
	code, body = export(admin, url.Values{"namespace": {ns}, "from": {t0.Add(time.Hour).Format(time.RFC3339)}, "to": {t0.Add(2 * time.Hour).Format(time.RFC3339)}})
	g.Expect(code).To(Equal(http.StatusOK), body)
	g.Expect(decode(body)).To(ConsistOf(HaveField("AuditID", "v2")))
	code, body = export(admin, url.Values{"namespace": {ns}, "name": {"bobs"}})
	g.Expect(code).To(Equal(http.StatusOK), body)
	g.Expect(decode(body)).To(HaveEach(HaveField("Name", "bobs")))

	// As CSV, with a header and quoting.
	code, body = export(admin, url.Values{"namespace": {ns}, "action": {"Viewed"}, "format": {"csv"}})
	g.Expect(code).To(Equal(http.StatusOK), body)
	rows, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(rows).To(HaveLen(3))
	g.Expect(rows[0][:3]).To(Equal([]string{"time", "action", "actor"}))
	g.Expect(rows[1]).To(ContainElement("with, a comma"))

	// A namespace's administrator exports that namespace only.
	code, _ = export(teamAdmin, url.Values{"namespace": {ns}})
	g.Expect(code).To(Equal(http.StatusOK))
	code, body = export(teamAdmin, url.Values{})
	g.Expect(code).To(Equal(http.StatusForbidden))
	g.Expect(body).To(ContainSubstring("cannot get apikeys/audit in group keymint.io cluster-wide"))

	// Everybody else is refused.
	code, body = export(nosy, url.Values{"namespace": {ns}})
	g.Expect(code).To(Equal(http.StatusForbidden), body)
	g.Expect(body).To(ContainSubstring(`user "system:serviceaccount:` + ns + `:nosy" cannot get apikeys/audit in group keymint.io in namespace ` + ns))
	code, _ = export("not-a-token", url.Values{})
	g.Expect(code).To(Equal(http.StatusUnauthorized))
	code, _ = export("", url.Values{})
	g.Expect(code).To(Equal(http.StatusUnauthorized))

	// Bad queries name the parameter.
	code, body = export(admin, url.Values{"from": {"yesterday"}})
	g.Expect(code).To(Equal(http.StatusBadRequest))
	g.Expect(body).To(ContainSubstring("from: want an RFC 3339 time"))
	code, body = export(admin, url.Values{"format": {"xml"}})
	g.Expect(code).To(Equal(http.StatusBadRequest))
	g.Expect(body).To(ContainSubstring("format: want json or csv"))
}
