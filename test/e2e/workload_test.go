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
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
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
	_, _, first := aliceKey(t, ns, "alice-app")
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
	g.Eventually(func() (string, error) {
		var err error
		second, err = secretKeyID(ns, "alice-app")
		return second, err
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

// TestAMountedKeyThroughAnInPlaceRotation: a workload that mounts the
// Secret of a key with spec.rotation and re-reads the file for every
// request goes through an in-place rotation (the owner's request, a grace
// of 2 minutes) with no refused request: the kubelet refreshes the mutable
// Secret's volume, and the gateway accepts the previous key until the
// workload has moved. This is the renewal a key's renewal time brings.
func TestAMountedKeyThroughAnInPlaceRotation(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := "e2e-rotation"
	newNamespace(t, ns)
	owner := asAlice(t)
	key := &keymintv1alpha1.APIKey{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "rotating"},
		Spec: keymintv1alpha1.APIKeySpec{User: alice, Expiration: keymintv1alpha1.Expiration{Months: new(int32(3))},
			Rotation: &keymintv1alpha1.Rotation{}},
	}
	g.Eventually(func() error { return owner.Create(ctx, key) }).WithTimeout(30 * time.Second).WithPolling(500 * time.Millisecond).Should(Succeed())
	waitActive(t, owner, ns, "rotating", time.Minute)
	_, first := keyIn(t, owner, ns, "rotating")
	gw := gateway(t, ns)
	apply(t, "client.yaml", map[string]string{"Namespace": ns, "Name": "client", "Gateway": gw, "Secret": "rotating"})
	pod := readyPods(t, ns, map[string]string{"instance": "client"}, 1, time.Minute)[0]
	g.Eventually(func() (int, error) {
		st, err := clientStatus(pod.Status.PodIP)
		return st.Accepted[first], err
	}).WithTimeout(30*time.Second).WithPolling(200*time.Millisecond).Should(BeNumerically(">", 0), "the workload's key was never accepted")

	patch := []byte(`{"metadata":{"annotations":{"keymint.io/rotate-requested-at":"` + time.Now().UTC().Format(time.RFC3339) + `","keymint.io/rotate-grace":"2m"}}}`)
	requested := time.Now()
	g.Expect(owner.Patch(ctx, key, client.RawPatch(types.MergePatchType, patch))).To(Succeed())
	var second string
	g.Eventually(func() (string, error) {
		var err error
		second, err = secretKeyID(ns, "rotating")
		return second, err
	}).WithTimeout(30*time.Second).WithPolling(100*time.Millisecond).ShouldNot(Equal(first), "keymint did not rotate the key")
	renewed := time.Since(requested)
	g.Eventually(func() (ClientStatus, error) { return clientStatus(pod.Status.PodIP) }).
		WithTimeout(90*time.Second).WithPolling(100*time.Millisecond).Should(HaveField("FileKeyID", second), "the mounted file never got the new key")
	moved := time.Since(requested)
	g.Eventually(func() (int, error) {
		st, err := clientStatus(pod.Status.PodIP)
		return st.Accepted[second], err
	}).WithTimeout(30 * time.Second).WithPolling(200 * time.Millisecond).Should(BeNumerically(">", 0))
	st, err := clientStatus(pod.Status.PodIP)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(st.Refused).To(BeEmpty(), "requests were refused through the rotation: %+v", st)
	t.Logf("in-place rotation: the Secret held the new key %v after the request, the mounted file %v after; accepted %v, refused %v",
		renewed.Round(time.Millisecond), moved.Round(100*time.Millisecond), st.Accepted, st.Refused)
}
