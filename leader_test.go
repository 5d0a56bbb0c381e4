package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/app"
	"github.com/keymint/keymint/internal/testenv"
)

// managerArgsEnv passes TestHelperManager its command line.
const managerArgsEnv = "KEYMINT_TEST_MANAGER_ARGS"

// TestHelperManager runs the manager with the arguments in
// $KEYMINT_TEST_MANAGER_ARGS, when startManagerProcess runs it.
func TestHelperManager(t *testing.T) {
	raw := os.Getenv(managerArgsEnv)
	if raw == "" {
		t.Skip("run by startManagerProcess")
	}
	var args []string
	if err := json.Unmarshal([]byte(raw), &args); err != nil {
		t.Fatal(err)
	}
	os.Args = append([]string{"manager"}, args...)
	main()
}

// startManagerProcess runs the manager, as a process of its own, with args.
func startManagerProcess(t *testing.T, kubeconfig, logPath string, args ...string) *exec.Cmd {
	t.Helper()
	raw, _ := json.Marshal(args)
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperManager$")
	cmd.Env = append(os.Environ(), managerArgsEnv+"="+string(raw), "KUBECONFIG="+kubeconfig)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}

// TestRestartedLeaderLeadsAtOnce: a leader killed with SIGKILL and started
// again under the same identity (its pod's name) leads again at once; it
// does not wait out the 60 s lease it held itself.
func TestRestartedLeaderLeadsAtOnce(t *testing.T) {
	testenv.RequireControlPlane(t)
	ctx := context.Background()
	env, err := testenv.Start(ctx, "config", app.Scheme)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = env.Stop() }()
	if err := env.Client.Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: metav1.NamespaceDefault, Name: "everyone-holds-keys"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "keymint-user"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "system:authenticated"}},
	}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	kubeconfig := adminKubeconfig(t, env.Environment, "keymint-manager", "system:masters")
	args := []string{"--leader-elect", "--leader-election-identity=keymint-manager-0", "--slot-namespace=" + testenv.SlotNamespace,
		"--health-probe-bind-address=0", "--metrics-bind-address=0", "--verify-bind-address=0", "--ext-authz-bind-address=0"}
	logPath := filepath.Join(dir, "manager.log")
	issued := func(name string) time.Duration {
		start := time.Now()
		key := &keymintv1alpha1.APIKey{
			ObjectMeta: metav1.ObjectMeta{Namespace: metav1.NamespaceDefault, Name: name},
			Spec:       keymintv1alpha1.APIKeySpec{User: "leader-" + name, Expiration: keymintv1alpha1.Expiration{Never: new(true)}},
		}
		if err := env.Client.Create(ctx, key); err != nil {
			t.Fatal(err)
		}
		err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 50*time.Second, true, func(ctx context.Context) (bool, error) {
			err := env.Client.Get(ctx, client.ObjectKeyFromObject(key), key)
			return err == nil && key.Status.Phase == keymintv1alpha1.PhaseActive, nil
		})
		if err != nil {
			logs, _ := os.ReadFile(logPath)
			t.Fatalf("%s was not issued within 50 s:\n%s", name, tail(string(logs), 3000))
		}
		return time.Since(start)
	}
	first := startManagerProcess(t, kubeconfig, logPath, args...)
	t.Logf("the first manager issued a key in %s", issued("first").Round(10*time.Millisecond))
	_ = first.Process.Kill()
	_ = first.Wait()
	startManagerProcess(t, kubeconfig, logPath, args...)
	took := issued("after-restart")
	t.Logf("the restarted leader issued a key %s after its start", took.Round(10*time.Millisecond))
	if took > 15*time.Second {
		t.Fatalf("the restarted leader took %s: it waited for its own lease", took)
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
