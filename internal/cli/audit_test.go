package cli

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keymint/keymint/internal/audit"
	"github.com/keymint/keymint/internal/testenv"
)

// serviceAccountToken returns a token of a new ServiceAccount in ns, holding
// ClusterRole role in ns when role is set.
func serviceAccountToken(t *testing.T, ns, name, role string) string {
	t.Helper()
	ctx := context.Background()
	g := NewWithT(t)
	token, err := env.ServiceAccountToken(ctx, ns, name)
	g.Expect(err).NotTo(HaveOccurred())
	if role != "" {
		g.Expect(env.Client.Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: name}},
		})).To(Succeed())
	}
	return token
}

// TestAuditExport: a user's reveal is on record, and an administrator
// exports it with the plugin; nobody else can.
func TestAuditExport(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	alice := newUser(t, "alice")
	_, stderr, code := alice.run("create", "ci", "--never", "--wait")
	g.Expect(code).To(Equal(ExitOK), stderr)
	_, stderr, code = alice.run("reveal", "ci")
	g.Expect(code).To(Equal(ExitOK), stderr)

	admin := serviceAccountToken(t, alice.namespace, "auditor", "keymint-admin")
	server := []string{"--audit-server", "https://" + env.Audit.Addr, "--audit-certificate-authority", env.Audit.CertFile}
	export := func(token string, args ...string) (string, string, int) {
		return alice.run(append(append([]string{"audit", "export", "--token", token}, server...), args...)...)
	}
	g.Eventually(func(g Gomega) {
		out, stderr, code := export(admin, "--key", "ci", "--action", "Viewed", "--since", "1h")
		g.Expect(code).To(Equal(ExitOK), stderr)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		g.Expect(lines).To(HaveLen(1))
		var r audit.Record
		g.Expect(json.Unmarshal([]byte(lines[0]), &r)).To(Succeed())
		g.Expect(r.Actor.Username).To(Equal(alice.name))
		g.Expect(r.Name).To(Equal("ci"))
		g.Expect(r.Namespace).To(Equal(alice.namespace))
	}).WithTimeout(20 * time.Second).Should(Succeed())

	out, stderr, code := export(admin, "--format", "csv", "--action", "Issued")
	g.Expect(code).To(Equal(ExitOK), stderr)
	g.Expect(out).To(HavePrefix(`"time","action","actor",`))
	g.Expect(out).To(ContainSubstring(`,"Issued","unknown",`))

	// Without a token, or with one that may not export, it says so.
	_, stderr, code = alice.run(append([]string{"audit", "export"}, server...)...)
	g.Expect(code).To(Equal(ExitUsage))
	g.Expect(stderr).To(ContainSubstring("the audit export authenticates with a bearer token"))
	nosy := serviceAccountToken(t, alice.namespace, "nosy", "")
	_, stderr, code = export(nosy)
	g.Expect(code).To(Equal(ExitError))
	g.Expect(stderr).To(ContainSubstring("403 Forbidden"))
	g.Expect(stderr).To(ContainSubstring("cannot get apikeys/audit"))
	_, stderr, code = export(admin, "-A")
	g.Expect(code).To(Equal(ExitError), "keymint-admin in one namespace exports that namespace only")
	g.Expect(stderr).To(ContainSubstring("cluster-wide"))
	_, stderr, code = alice.run("audit", "export", "--token", admin)
	g.Expect(code).To(Equal(ExitUsage))
	g.Expect(stderr).To(ContainSubstring("--audit-server"))
}

// TestAuditExportSendsNoTokenInTheClear: an http:// audit server is refused
// before any request carries the token.
func TestAuditExportSendsNoTokenInTheClear(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	var requests atomic.Int32
	plain := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { requests.Add(1) }))
	defer plain.Close()
	alice := newUser(t, "alice")
	for _, server := range []string{plain.URL, strings.TrimPrefix(plain.URL, "http://"), "https://"} {
		_, stderr, code := alice.run("audit", "export", "--token", "secret-token", "--audit-server", server)
		g.Expect(code).To(Equal(ExitUsage), stderr)
		g.Expect(stderr).To(ContainSubstring("--audit-server must be an https:// URL"))
		g.Expect(stderr).NotTo(ContainSubstring("secret-token"))
	}
	g.Expect(requests.Load()).To(BeZero(), "a request reached the plain-HTTP server")
}
