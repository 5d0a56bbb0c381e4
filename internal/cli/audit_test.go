package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/keymint/keymint/internal/audit"
	"github.com/keymint/keymint/internal/testenv"
)

// administrator returns a kubeconfig of a new user authenticated by a
// client certificate, holding ClusterRole role in ns when role is set.
func administrator(t *testing.T, ns, name, role string) string {
	t.Helper()
	ctx := context.Background()
	g := NewWithT(t)
	if role != "" {
		g.Expect(env.Client.Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: name}},
		})).To(Succeed())
	}
	u, err := env.AddUser(envtest.User{Name: name}, env.Config)
	g.Expect(err).NotTo(HaveOccurred())
	raw, err := u.KubeConfig()
	g.Expect(err).NotTo(HaveOccurred())
	path := filepath.Join(t.TempDir(), "kubeconfig")
	g.Expect(os.WriteFile(path, raw, 0o600)).To(Succeed())
	return path
}

// TestAuditExport: a user's reveal is on record, and an administrator
// exports it with the plugin through keymint's API, with a kubeconfig that
// authenticates by client certificate and nothing more; nobody else can.
func TestAuditExport(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	alice := newUser(t, "alice")
	_, stderr, code := alice.run("create", "ci", "--never", "--wait")
	g.Expect(code).To(Equal(ExitOK), stderr)
	_, stderr, code = alice.run("reveal", "ci")
	g.Expect(code).To(Equal(ExitOK), stderr)

	admin := administrator(t, alice.namespace, "carol@"+alice.namespace, "keymint-admin")
	export := func(kubeconfig string, args ...string) (string, string, int) {
		out, errOut := &bytes.Buffer{}, &bytes.Buffer{}
		code := Execute(&Options{Streams: genericiooptions.IOStreams{In: &bytes.Buffer{}, Out: out, ErrOut: errOut}},
			append([]string{"audit", "export", "--kubeconfig", kubeconfig, "-n", alice.namespace}, args...))
		return out.String(), errOut.String(), code
	}
	out, stderr, code := export(admin, "--key", "ci", "--action", "Viewed", "--since", "1h")
	g.Expect(code).To(Equal(ExitOK), stderr)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	g.Expect(lines).To(HaveLen(1))
	var r audit.Record
	g.Expect(json.Unmarshal([]byte(lines[0]), &r)).To(Succeed())
	g.Expect(r.Actor.Username).To(Equal(alice.name))
	g.Expect(r.Name).To(Equal("ci"))
	g.Expect(r.Namespace).To(Equal(alice.namespace))
	g.Expect(r.ID).NotTo(BeEmpty())

	out, stderr, code = export(admin, "--format", "csv", "--action", "Issued")
	g.Expect(code).To(Equal(ExitOK), stderr)
	g.Expect(out).To(HavePrefix(`"time","action","actor",`))
	g.Expect(out).To(ContainSubstring(`,"Issued","unknown",`))
	out, _, code = export(admin, "--since", "1h", "--to", time.Now().Add(-time.Hour).UTC().Format(time.RFC3339))
	g.Expect(code).To(Equal(ExitOK))
	g.Expect(out).To(BeEmpty(), "a time range before every record")

	// Whoever may not read the trail is told what grants it.
	nosy := administrator(t, alice.namespace, "nosy@"+alice.namespace, "")
	_, stderr, code = export(nosy)
	g.Expect(code).To(Equal(ExitError))
	g.Expect(stderr).To(ContainSubstring("you may not read the audit trail in this namespace"))
	_, stderr, code = export(alice.kubeconfig)
	g.Expect(code).To(Equal(ExitError), "a keymint-user reads no trail")
	g.Expect(stderr).To(ContainSubstring("keymint-admin or keymint-auditor grants it"))
	_, stderr, code = export(admin, "-A")
	g.Expect(code).To(Equal(ExitError), "keymint-admin in one namespace exports that namespace only")
	g.Expect(stderr).To(ContainSubstring("cluster-wide"))
}
