//go:build e2e

package e2e

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
)

// TestADeletionNamesItsActor: with the chart as installed (two managers,
// no audit webhook), the operator deletes alice's APIKey. kube-apiserver
// sends the delete to keymint's deletion webhook through Service
// keymint-api, whose CA the manager injected, and the trail's Deleted
// record names the operator, exported with the operator's kubeconfig.
func TestADeletionNamesItsActor(t *testing.T) {
	g := NewWithT(t)
	ns := "e2e-deletions"
	aliceKey(t, ns, "doomed")
	key := &keymintv1alpha1.APIKey{}
	g.Expect(admin.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "doomed"}, key)).To(Succeed())
	g.Expect(admin.Delete(context.Background(), key)).To(Succeed())
	g.Eventually(func() (string, error) {
		out, err := exec.Command(filepath.Join(repo, "bin", "kubectl-apikey"), "audit", "export", "-n", ns,
			"--action", "Deleted", "--key", "doomed").CombinedOutput()
		return string(out), err
	}).WithTimeout(time.Minute).WithPolling(time.Second).Should(ContainSubstring(`"username":"e2e-admin"`),
		"the deletion's record does not name the operator")
}
