//go:build e2e

package e2e

import (
	"context"
	"net/http"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
)

// gateway runs the backend and the nginx gateway in ns and returns the
// gateway's address (its ClusterIP Service, through kube-proxy).
func gateway(t *testing.T, ns string) string {
	t.Helper()
	apply(t, "backend.yaml", map[string]string{"Namespace": ns})
	readyPods(t, ns, map[string]string{"app": "backend"}, 1, time.Minute)
	apply(t, "gateway.yaml", map[string]string{
		"Namespace": ns,
		"Backend":   clusterIP(t, ns, "backend"),
		"Verify":    clusterIP(t, systemNamespace, "keymint-verify"),
	})
	readyPods(t, ns, map[string]string{"app": "gateway"}, 1, time.Minute)
	return clusterIP(t, ns, "gateway")
}

// TestGatewayPod: nginx in a Pod asks keymint-verify through its Service.
// A valid key passes and the backend learns its user and key ID; another
// key is refused; a deleted key is refused within 2 s of the delete.
func TestGatewayPod(t *testing.T) {
	g := NewWithT(t)
	ns := "e2e-gateway"
	owner, key, id := aliceKey(t, ns, "alice-gw")
	url := "http://" + gateway(t, ns) + ":8080/"

	g.Eventually(func() (int, error) {
		code, _, err := ask(url, key)
		return code, err
	}).WithTimeout(30*time.Second).WithPolling(200*time.Millisecond).Should(Equal(http.StatusOK), "the gateway never let the valid key in")
	_, ans, err := ask(url, key)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(ans).To(Equal(Answer{User: alice, KeyID: id}))

	code, _, err := ask(url, "km_not-a-key")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(code).To(Equal(http.StatusUnauthorized))

	ak := &keymintv1alpha1.APIKey{}
	ak.Namespace, ak.Name = ns, "alice-gw"
	deleted := time.Now()
	g.Expect(owner.Delete(context.Background(), ak)).To(Succeed())
	g.Eventually(func() (int, error) {
		code, _, err := ask(url, key)
		return code, err
	}).WithTimeout(2*time.Second).WithPolling(20*time.Millisecond).Should(Equal(http.StatusUnauthorized), "the deleted key still passes the gateway")
	t.Logf("the gateway Pod refused the deleted key %s after the delete", time.Since(deleted).Round(time.Millisecond))
}
