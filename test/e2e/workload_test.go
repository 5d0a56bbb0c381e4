//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
// new key, and the gateway accepts it, once the old Pod is gone. (Renewal
// into a mutable Secret, which running Pods do see, is spec.rotation's.)
func TestAMountedKeyAfterAReissue(t *testing.T) {
	g := NewWithT(t)
	ns := "e2e-workload"
	owner, _, first := aliceKey(t, ns, "alice-app")
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
		_, second = keyIn(t, owner, ns, "alice-app")
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

	// A Pod started once the old one is gone mounts the reissued key. It is
	// deleted gracefully: the kubelet lets go of a Pod's Secrets when it has
	// finished the Pod, before the API server removes it. (A Pod deleted
	// with no grace period is removed at once, and a Pod started then, or
	// beside a Pod that still runs, may get the node's old copy: we saw both.)
	g.Expect(admin.Delete(context.Background(), &pod, client.GracePeriodSeconds(1))).To(Succeed())
	g.Eventually(func() error {
		return admin.Get(context.Background(), client.ObjectKeyFromObject(&pod), &corev1.Pod{})
	}).WithTimeout(time.Minute).Should(MatchError(ContainSubstring("not found")), "Pod %s", pod.Name)
	apply(t, "client.yaml", workload("restarted"))
	pod = readyPods(t, ns, map[string]string{"instance": "restarted"}, 1, time.Minute)[0]
	g.Eventually(func() (ClientStatus, error) {
		return clientStatus(pod.Status.PodIP)
	}).WithTimeout(30*time.Second).WithPolling(200*time.Millisecond).Should(And(
		HaveField("FileKeyID", second),
		HaveField("Accepted", HaveKeyWithValue(second, BeNumerically(">", 0))),
	), "a Pod started after the reissue does not use the new key")
}

// TestAChangedSecretReachesTheMountedFile measures what renewal into the
// same Secret will rely on: a change to a mutable Secret reaches a Pod that
// mounts it within the kubelet's sync period (syncFrequency 10s on this
// node, so within about 15 s; with the default of 1 minute, 72 to 84 s were
// measured on this kind of machine).
func TestAChangedSecretReachesTheMountedFile(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := "e2e-mounted"
	newNamespace(t, ns)
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "mutable"},
		StringData: map[string]string{"api-key": "not-a-key", "key-id": "one"},
	}
	g.Expect(admin.Create(ctx, secret)).To(Succeed())
	// The client needs a gateway address; nothing answers there, which is fine.
	apply(t, "client.yaml", map[string]string{"Namespace": ns, "Name": "reader", "Gateway": "127.0.0.1", "Secret": "mutable"})
	pod := readyPods(t, ns, map[string]string{"instance": "reader"}, 1, time.Minute)[0]
	g.Eventually(func() (ClientStatus, error) { return clientStatus(pod.Status.PodIP) }).
		WithTimeout(10 * time.Second).Should(HaveField("FileKeyID", "one"))

	var took []time.Duration
	for _, id := range []string{"two", "three", "four"} {
		secret.StringData = map[string]string{"key-id": id}
		g.Expect(admin.Update(ctx, secret)).To(Succeed())
		changed := time.Now()
		g.Eventually(func() (ClientStatus, error) { return clientStatus(pod.Status.PodIP) }).
			WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).Should(HaveField("FileKeyID", id))
		took = append(took, time.Since(changed).Round(100*time.Millisecond))
	}
	t.Logf("a changed Secret reached the mounted file after %v", took)
}
