//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"text/template"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	auditv1alpha1 "github.com/keymint/keymint/api/audit/v1alpha1"
	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
)

// newKey creates APIKey ns/name of alice with c (alice's own client, or one
// with the delegate verb), with a key that never expires, and waits until
// it is Active.
func newKey(t *testing.T, c client.Client, ns, name string, within time.Duration) {
	t.Helper()
	key := &keymintv1alpha1.APIKey{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: keymintv1alpha1.APIKeySpec{
			User:       alice,
			Expiration: keymintv1alpha1.Expiration{Never: new(true)},
		},
	}
	// The admission policies may still be loading just after the install.
	NewWithT(t).Eventually(func() error { return c.Create(context.Background(), key) }).
		WithTimeout(30 * time.Second).WithPolling(500 * time.Millisecond).Should(Succeed())
	waitActive(t, c, ns, name, within)
}

// aliceKey makes namespace ns where alice holds APIKey name, issued, and
// returns alice's client, the key and its ID, revealed to alice.
func aliceKey(t *testing.T, ns, name string) (owner client.Client, key, id string) {
	t.Helper()
	newNamespace(t, ns)
	owner = asAlice(t)
	newKey(t, owner, ns, name, time.Minute)
	key, id = keyIn(t, owner, ns, name)
	return owner, key, id
}

// waitActive waits until APIKey ns/name is Active.
func waitActive(t *testing.T, c client.Client, ns, name string, within time.Duration) {
	t.Helper()
	key := &keymintv1alpha1.APIKey{}
	NewWithT(t).Eventually(func() (keymintv1alpha1.Phase, error) {
		err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, key)
		return key.Status.Phase, err
	}).WithTimeout(within).WithPolling(100*time.Millisecond).Should(Equal(keymintv1alpha1.PhaseActive), "APIKey %s/%s", ns, name)
}

// keyIn reveals the key of APIKey ns/name and its ID as its owner does:
// through keymint's API (an APIKeyReveal), served by the manager's Pods
// behind the API server's aggregation layer. The owner cannot read the
// Secret itself.
func keyIn(t *testing.T, owner client.Client, ns, name string) (key, id string) {
	t.Helper()
	r := &auditv1alpha1.APIKeyReveal{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns},
		Spec:       auditv1alpha1.APIKeyRevealSpec{Name: name},
	}
	// The aggregated API may be on its way up with a new manager Pod.
	NewWithT(t).Eventually(func() error {
		return owner.Create(context.Background(), r)
	}).WithTimeout(2 * time.Minute).WithPolling(time.Second).Should(Succeed())
	return r.Status.Key, r.Status.KeyID
}

// secretKeyID is the key ID the Secret of a key holds now, read by the
// cluster's operator: what a workload mounting the Secret gets.
func secretKeyID(ns, name string) (string, error) {
	s := &corev1.Secret{}
	err := admin.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, s)
	return string(s.Data[keymintv1alpha1.DataKeyID]), err
}

// apply creates the objects of testdata/FILE, a template filled with data,
// and deletes them when the test ends.
func apply(t *testing.T, file string, data any) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := template.Must(template.New(file).Option("missingkey=error").Parse(string(raw))).Execute(&out, data); err != nil {
		t.Fatal(err)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(&out, 4096)
	for {
		obj := &unstructured.Unstructured{}
		if err := dec.Decode(&obj.Object); err == io.EOF {
			return
		} else if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if len(obj.Object) == 0 {
			continue
		}
		if err := admin.Create(context.Background(), obj); err != nil {
			t.Fatalf("%s: %s %s: %v", file, obj.GetKind(), obj.GetName(), err)
		}
		t.Cleanup(func() { _ = admin.Delete(context.Background(), obj) })
	}
}

// readyPods waits until the Pods of ns matching labels are n and Ready (the
// kubelet's readiness probes passed) and returns them.
func readyPods(t *testing.T, ns string, labels map[string]string, n int, within time.Duration) []corev1.Pod {
	t.Helper()
	var ready []corev1.Pod
	NewWithT(t).Eventually(func() (int, error) {
		var pods corev1.PodList
		if err := admin.List(context.Background(), &pods, client.InNamespace(ns), client.MatchingLabels(labels)); err != nil {
			return 0, err
		}
		ready = ready[:0]
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil && podReady(&p) {
				ready = append(ready, p)
			}
		}
		return len(ready), nil
	}).WithTimeout(within).WithPolling(200*time.Millisecond).Should(Equal(n), "Ready Pods %v in %s", labels, ns)
	return ready
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// clusterIP is Service ns/name's ClusterIP.
func clusterIP(t *testing.T, ns, name string) string {
	t.Helper()
	svc := &corev1.Service{}
	if err := admin.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, svc); err != nil {
		t.Fatal(err)
	}
	return svc.Spec.ClusterIP
}

// Answer is what hack/e2e/app's backend answers behind the gateway.
type Answer struct {
	User  string `json:"user"`
	KeyID string `json:"keyID"`
}

// ask sends a request with key through the gateway at url: the status code
// and, when let through, whom the backend was told about.
func ask(url, key string) (int, Answer, error) {
	var ans Answer
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, ans, err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	hc := &http.Client{Timeout: 2 * time.Second}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, ans, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode == http.StatusOK {
		err = json.NewDecoder(resp.Body).Decode(&ans)
	}
	return resp.StatusCode, ans, err
}

// ctr runs containerd's ctr against the node's containerd.
func ctr(t *testing.T, args ...string) {
	t.Helper()
	dir := os.Getenv("E2E_DIR")
	cmd := exec.Command(filepath.Join(repo, "bin", "node", "ctr"),
		append([]string{"-a", filepath.Join(dir, "containerd", "containerd.sock"), "-n", "k8s.io"}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ctr %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// containerID is the containerd ID of the Pod's first container.
func containerID(t *testing.T, p *corev1.Pod) string {
	t.Helper()
	if len(p.Status.ContainerStatuses) == 0 {
		t.Fatalf("Pod %s has no container status", p.Name)
	}
	id, ok := strings.CutPrefix(p.Status.ContainerStatuses[0].ContainerID, "containerd://")
	if !ok {
		t.Fatalf("Pod %s: container ID %q is not containerd's", p.Name, p.Status.ContainerStatuses[0].ContainerID)
	}
	return id
}
