//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ClientStatus is what hack/e2e/app's client serves on /status.
type ClientStatus struct {
	FileKeyID string         `json:"fileKeyID"`
	Accepted  map[string]int `json:"accepted"`
	Refused   map[string]int `json:"refused"`
	LastError string         `json:"lastError"`
}

func clientStatus(podIP string) (ClientStatus, error) {
	var st ClientStatus
	hc := &http.Client{Timeout: 2 * time.Second}
	resp, err := hc.Get("http://" + podIP + ":8081/status")
	if err != nil {
		return st, err
	}
	defer func() { _ = resp.Body.Close() }()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// TestAMountedKeyAfterAReissue: a workload Pod mounts a key's Secret as a
// volume and calls the gateway with the key it reads from the file. When
// the Secret is deleted, keymint reissues the key into a new Secret of the
// same name. The Secret is immutable, and the kubelet stops watching an
// immutable Secret once it has mounted it: the running Pod keeps the old
// key, which the gateway refuses, for as long as it runs (well past the
// node's syncFrequency of 10 s). A Pod started after the reissue mounts the
// new key, and the gateway accepts it, once no Pod of the node mounts the
// old one: until then the kubelet serves new Pods its cached copy too.
// (Renewal into a mutable Secret, which running Pods do see, is
// spec.rotation's.)
func TestAMountedKeyAfterAReissue(t *testing.T) {
	g := NewWithT(t)
	ns := "e2e-workload"
	newNamespace(t, ns, "alice")
	alice := as(t, "alice")
	newKey(t, alice, ns, "alice-app", time.Minute)
	_, first := keyIn(t, alice, ns, "alice-app")
	gw := gateway(t, ns)
	workload := func(name string) map[string]string {
		return map[string]string{"Namespace": ns, "Name": name, "Gateway": gw, "Secret": "alice-app"}
	}
	apply(t, "client.yaml", workload("client"))
	pod := readyPods(t, ns, map[string]string{"instance": "client"}, 1, time.Minute)[0]
	g.Eventually(func() (int, error) {
		st, err := clientStatus(pod.Status.PodIP)
		return st.Accepted[first], err
	}).WithTimeout(30*time.Second).WithPolling(200*time.Millisecond).Should(BeNumerically(">", 0), "the workload's key was never accepted")

	secret := &corev1.Secret{}
	g.Expect(admin.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "alice-app"}, secret)).To(Succeed())
	g.Expect(secret.Immutable).To(HaveValue(BeTrue()))
	deleted := time.Now()
	g.Expect(admin.Delete(context.Background(), secret)).To(Succeed())
	var second string
	g.Eventually(func() string {
		_, second = keyIn(t, alice, ns, "alice-app")
		return second
	}).WithTimeout(30*time.Second).WithPolling(100*time.Millisecond).ShouldNot(Equal(first), "keymint did not reissue the key")
	t.Logf("key reissued %s after the Secret's delete", time.Since(deleted).Round(time.Millisecond))

	// Two sync periods and more: the running Pod still reads the old key,
	// and the gateway refuses it.
	g.Consistently(func() (string, error) {
		st, err := clientStatus(pod.Status.PodIP)
		return st.FileKeyID, err
	}).WithTimeout(25 * time.Second).WithPolling(time.Second).Should(Equal(first))
	st, err := clientStatus(pod.Status.PodIP)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(st.Refused[first]).To(BeNumerically(">", 0))
	g.Expect(st.Accepted).NotTo(HaveKey(second))
	// So does a Pod started beside it, as in a rolling update.
	apply(t, "client.yaml", workload("surge"))
	surge := readyPods(t, ns, map[string]string{"instance": "surge"}, 1, time.Minute)[0]
	g.Expect(clientStatus(surge.Status.PodIP)).To(HaveField("FileKeyID", first))
	g.Expect(admin.Delete(context.Background(), &surge, client.GracePeriodSeconds(0))).To(Succeed())

	// A Pod started once the kubelet has let go of the old one (its
	// directory on the node is gone) mounts the reissued key.
	g.Expect(admin.Delete(context.Background(), &pod, client.GracePeriodSeconds(0))).To(Succeed())
	for _, p := range []corev1.Pod{pod, surge} {
		dir := filepath.Join(os.Getenv("E2E_DIR"), "kubelet", "root", "pods", string(p.UID))
		g.Eventually(func() bool {
			_, err := os.Stat(dir)
			return os.IsNotExist(err)
		}).WithTimeout(time.Minute).WithPolling(200*time.Millisecond).Should(BeTrue(), "the kubelet kept %s", dir)
	}
	apply(t, "client.yaml", workload("restarted"))
	pod = readyPods(t, ns, map[string]string{"instance": "restarted"}, 1, time.Minute)[0]
	g.Eventually(func() (ClientStatus, error) {
		return clientStatus(pod.Status.PodIP)
	}).WithTimeout(30*time.Second).WithPolling(200*time.Millisecond).Should(And(
		HaveField("FileKeyID", second),
		HaveField("Accepted", HaveKeyWithValue(second, BeNumerically(">", 0))),
	), "a Pod started after the reissue does not use the new key")
}
