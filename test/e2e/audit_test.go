//go:build e2e

package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	certutil "k8s.io/client-go/util/cert"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// setChart changes the release's values (helm upgrade --reuse-values --set).
func setChart(t *testing.T, wait bool, set string) {
	t.Helper()
	if out, err := helm(wait, "--reuse-values", "--set", set); err != nil {
		t.Fatalf("helm --set %s: %v\n%s", set, err, out)
	}
}

// restartAPIServer restarts the cluster's kube-apiserver with flags.
func restartAPIServer(t *testing.T, flags ...string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(repo, "hack", "e2e", "cluster.sh"), append([]string{"restart-apiserver"}, flags...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("restarting kube-apiserver: %v\n%s", err, out)
	}
}

// TestTheAuditWebhookThroughItsService: with the chart's audit option on
// (one manager, the audit log on a PersistentVolume, Service
// keymint-audit), kube-apiserver sends its audit batches to keymint
// through the Service's ClusterIP, kube-proxy and the Pod network. alice
// cannot read her key's Secret; she sees her key through keymint's API, and
// an operator who reads the Secret directly is recorded as Viewed, with his
// name, by the webhook: kubectl apikey audit export lists both views.
func TestTheAuditWebhookThroughItsService(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	dir := t.TempDir()

	// The volume of the audit log: a directory of the node (no provisioner here).
	pvDir := filepath.Join(os.Getenv("E2E_DIR"), "audit-pv")
	g.Expect(os.MkdirAll(pvDir, 0o777)).To(Succeed())
	g.Expect(os.Chmod(pvDir, 0o777)).To(Succeed()) // the manager runs as 65532
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "keymint-audit-log"},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:               corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("2Gi")},
			AccessModes:            []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeSource: corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: pvDir}},
		},
	}
	g.Expect(admin.Create(ctx, pv)).To(Succeed())
	t.Cleanup(func() { _ = admin.Delete(context.Background(), pv) })
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	token := hex.EncodeToString(secret)
	g.Expect(admin.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: systemNamespace, Name: "keymint-audit-webhook"},
		StringData: map[string]string{"token": token},
	})).To(Succeed())

	setChart(t, false, "audit.enabled=true")
	t.Cleanup(func() {
		setChart(t, true, "audit.enabled=false")
		for _, o := range []client.Object{
			&corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: systemNamespace, Name: "keymint-audit-log"}},
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: systemNamespace, Name: "keymint-audit-tls"}},
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: systemNamespace, Name: "keymint-audit-webhook"}},
		} {
			_ = admin.Delete(context.Background(), o)
		}
	})
	// The serving certificate names the Service and its ClusterIP, which
	// exists once the chart has made the Service.
	ip := clusterIP(t, systemNamespace, "keymint-audit")
	certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKey("keymint-audit.keymint-system.svc", []net.IP{net.ParseIP(ip)}, nil)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(admin.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: systemNamespace, Name: "keymint-audit-tls"},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{corev1.TLSCertKey: certPEM, corev1.TLSPrivateKeyKey: keyPEM},
	})).To(Succeed())
	readyPods(t, systemNamespace, managerPods, 1, 2*time.Minute)

	kubeconfig := filepath.Join(dir, "audit-webhook.kubeconfig")
	g.Expect(clientcmd.WriteToFile(clientcmdapi.Config{
		Clusters:       map[string]*clientcmdapi.Cluster{"keymint-audit": {Server: "https://" + ip + ":9443/audit/events", CertificateAuthorityData: certPEM}},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{"kube-apiserver": {Token: token}},
		Contexts:       map[string]*clientcmdapi.Context{"keymint-audit": {Cluster: "keymint-audit", AuthInfo: "kube-apiserver"}},
		CurrentContext: "keymint-audit",
	}, kubeconfig)).To(Succeed())
	restartAPIServer(t, "--audit-policy-file="+filepath.Join(repo, "config", "audit", "policy.yaml"),
		"--audit-webhook-config-file="+kubeconfig, "--audit-webhook-batch-max-wait=1s", "--audit-webhook-initial-backoff=1s")
	t.Cleanup(func() { restartAPIServer(t) })

	ns := "e2e-audit"
	owner, _, _ := aliceKey(t, ns, "alice-audited") // alice sees her key through keymint's API: a view
	// alice may not read the Secret herself; an operator with rights on
	// Secrets may, and only the API server's audit webhook sees it.
	stored := &corev1.Secret{}
	g.Expect(apierrors.IsForbidden(owner.Get(ctx, client.ObjectKey{Namespace: ns, Name: "alice-audited"}, stored))).To(BeTrue(),
		"alice read her key's Secret directly")
	g.Expect(admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "alice-audited"}, stored)).To(Succeed())

	// Both views, exported with the operator's own kubeconfig through
	// keymint's API.
	g.Eventually(func() (string, error) {
		out, err := exec.Command(filepath.Join(repo, "bin", "kubectl-apikey"), "audit", "export", "-n", ns,
			"--action", "Viewed", "--key", "alice-audited").CombinedOutput()
		return string(out), err
	}).WithTimeout(time.Minute).WithPolling(time.Second).Should(And(
		ContainSubstring(`"username":"alice"`), ContainSubstring(`"username":"e2e-admin"`)),
		"alice's view through keymint's API and the operator's read of the Secret were not both recorded")
}
