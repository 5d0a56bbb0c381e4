package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	auditv1alpha1 "github.com/keymint/keymint/api/audit/v1alpha1"
	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/testenv"
)

// TestARevealOutlivesTheReplicaKilledAfterIt: replica A, a manager process
// of its own serving keymint's API, acknowledges alice's reveal and is
// killed with SIGKILL. Replica B, started after it with no file of A's,
// serves the Viewed record through the API server, once: an acknowledged
// record is in the API server's store before the key leaves.
func TestARevealOutlivesTheReplicaKilledAfterIt(t *testing.T) {
	testenv.RequireControlPlane(t)
	ctx := context.Background()
	dir := t.TempDir()
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(keymintv1alpha1.AddToScheme(scheme))
	utilruntime.Must(auditv1alpha1.AddToScheme(scheme))
	env, err := testenv.Start(ctx, "config", scheme, testenv.WithAggregation(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = env.Stop() }()
	if err := env.Client.Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: metav1.NamespaceDefault, Name: "alice-holds-keys"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "keymint-user"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "alice"}},
	}); err != nil {
		t.Fatal(err)
	}
	kubeconfig := adminKubeconfig(t, env.Environment, "keymint-manager", "system:masters")
	args := []string{"--slot-namespace=" + testenv.SlotNamespace, "--health-probe-bind-address=0", "--metrics-bind-address=0",
		"--verify-bind-address=0", "--ext-authz-bind-address=0",
		"--api-bind-address=" + env.API.Addr(), "--api-tls-cert-file=" + env.API.CertFile, "--api-tls-key-file=" + env.API.KeyFile,
		"--authentication-kubeconfig=" + env.API.Kubeconfig, "--authorization-kubeconfig=" + env.API.Kubeconfig}
	logs := func(name string) string {
		raw, _ := os.ReadFile(filepath.Join(dir, name))
		return tail(string(raw), 3000)
	}
	a := startManagerProcess(t, kubeconfig, filepath.Join(dir, "a.log"), args...)
	if err := env.API.WaitAvailable(ctx, env.Config, time.Minute); err != nil {
		t.Fatalf("%v\n%s", err, logs("a.log"))
	}

	u, err := env.AddUser(envtest.User{Name: "alice"}, env.Config)
	if err != nil {
		t.Fatal(err)
	}
	alice, err := client.New(u.Config(), client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	key := &keymintv1alpha1.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: metav1.NamespaceDefault, Name: "ci"},
		Spec: keymintv1alpha1.APIKeySpec{User: "alice", Expiration: keymintv1alpha1.Expiration{Never: new(true)}}}
	if err := alice.Create(ctx, key); err != nil {
		t.Fatal(err)
	}
	if err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		err := env.Client.Get(ctx, client.ObjectKeyFromObject(key), key)
		return err == nil && key.Status.Phase == keymintv1alpha1.PhaseActive, nil
	}); err != nil {
		t.Fatalf("the key was not issued:\n%s", logs("a.log"))
	}
	reveal := &auditv1alpha1.APIKeyReveal{ObjectMeta: metav1.ObjectMeta{Namespace: metav1.NamespaceDefault},
		Spec: auditv1alpha1.APIKeyRevealSpec{Name: "ci"}}
	if err := alice.Create(ctx, reveal); err != nil || reveal.Status.KeyID != key.Status.KeyID {
		t.Fatalf("alice's reveal: %v (key ID %q)\n%s", err, reveal.Status.KeyID, logs("a.log"))
	}
	// Acknowledged: A goes at once, with no chance to flush anything.
	_ = a.Process.Kill()
	_ = a.Wait()

	startManagerProcess(t, kubeconfig, filepath.Join(dir, "b.log"), args...)
	var viewed []auditv1alpha1.AuditRecord
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		list := &auditv1alpha1.AuditRecordList{}
		if err := env.Client.List(ctx, list, client.InNamespace(metav1.NamespaceDefault), client.MatchingFields{"action": "Viewed"}); err != nil {
			return false, nil // B is not serving yet
		}
		viewed = list.Items
		return true, nil
	}); err != nil {
		t.Fatalf("replica B never served the trail:\n%s", logs("b.log"))
	}
	if len(viewed) != 1 || viewed[0].Actor.Username != "alice" || viewed[0].KeyID != key.Status.KeyID {
		t.Fatalf("replica B serves %d Viewed records, want alice's one: %+v", len(viewed), viewed)
	}
}
