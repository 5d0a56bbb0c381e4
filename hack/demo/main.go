// Command demo runs keymint on a local control plane (kube-apiserver and
// etcd from bin/k8s, started by envtest), applies config/samples and shows
// what happens, then keeps running until interrupted. `make demo` runs it.
package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/keymint/keymint/internal/cli"
	"github.com/keymint/keymint/internal/testenv"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func init() {
	// envtest's own logs are not part of the output.
	logf.SetLogger(logr.Discard())
}

func run() error {
	// Interrupted at any step, the demo still stops what it started.
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	stopWithMake(ctx)
	defer stopAll()
	// Until the demo is up, an interrupt stops what has started and exits.
	var up atomic.Bool
	go func() {
		<-ctx.Done()
		if !up.Load() {
			stopAll()
			os.Exit(130)
		}
	}()
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		assets = filepath.Join(root, "bin", "k8s")
	}
	dir := filepath.Join(root, ".demo")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}

	step("starting kube-apiserver and etcd from " + assets)
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	// The API server audits Secrets and APIKeys (config/audit/policy.yaml)
	// and sends its batches to the manager's audit webhook every second.
	webhook, err := testenv.ConfigureAudit(env, filepath.Join(root, "config"), dir)
	if err != nil {
		return err
	}
	// The aggregation layer, as on a kubeadm or managed cluster: the API
	// server forwards audit.keymint.io to the manager with the caller's
	// identity.
	aggregation, err := testenv.ConfigureAggregation(env, dir)
	if err != nil {
		return err
	}
	if _, err := env.Start(); err != nil {
		return fmt.Errorf("starting the control plane: %w", err)
	}
	atStop(func() {
		step("stopping kube-apiserver and etcd")
		_ = env.Stop()
	})

	admin, err := env.AddUser(envtest.User{Name: "demo-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return err
	}
	kubeconfigBytes, err := admin.KubeConfig()
	if err != nil {
		return err
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, kubeconfigBytes, 0o600); err != nil {
		return err
	}
	// Always the kubectl built with the control plane, never another on PATH.
	kubectlAs := func(config string, args ...string) error {
		shown := "kubectl"
		if config != kubeconfig {
			shown = "kubectl --kubeconfig " + relative(root, config)
		}
		fmt.Printf("\n$ %s %s\n", shown, strings.Join(args, " "))
		cmd := exec.Command(filepath.Join(assets, "kubectl"), args...)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+config)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		return cmd.Run()
	}
	kubectl := func(args ...string) error { return kubectlAs(kubeconfig, args...) }
	quiet := func(args ...string) error {
		cmd := exec.Command(filepath.Join(assets, "kubectl"), args...)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
		return cmd.Run()
	}
	step("installing keymint-system, the access roles and the self-service admission policies (make install)")
	for _, dir := range []string{"namespace", "access", "admission"} {
		if err := kubectl("apply", "--server-side", "-k", filepath.Join(root, "config", dir)); err != nil {
			return err
		}
	}
	step("the installer (demo-admin) makes carol the administrator of namespace default's keys: keymint-admin, nothing on Secrets")
	if err := quiet("create", "serviceaccount", "carol", "-n", "keymint-system"); err != nil {
		return err
	}
	if err := kubectl("create", "rolebinding", "carol-keymint-admin", "-n", "default",
		"--clusterrole=keymint-admin", "--serviceaccount=keymint-system:carol"); err != nil {
		return err
	}
	carol, err := tokenKubeconfig(assets, kubeconfig, dir, "carol")
	if err != nil {
		return err
	}
	step("carol grants alice and bob access to API keys in namespace default")
	for _, u := range []string{"alice", "bob"} {
		if err := kubectlAs(carol, "create", "rolebinding", u+"-api-keys", "-n", "default", "--clusterrole=keymint-user", "--user="+u); err != nil {
			return err
		}
	}

	step("registering keymint's API (APIService v1alpha1.audit.keymint.io) and starting the keymint manager (logs in .demo/manager.log)")
	auditLog := filepath.Join(dir, "audit.log")
	verifyURL, exited, err := startKeymint(ctx, root, dir, auditLog, env, admin, webhook, aggregation)
	if err != nil {
		return err
	}

	waitFor := func(args ...string) {
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) && quiet(args...) != nil {
			time.Sleep(200 * time.Millisecond)
		}
	}
	step("applying config/samples: two keys for alice, a third that must wait, one for bob")
	// The admission policies take a moment to learn the new CRD.
	waitFor("apply", "-k", filepath.Join(root, "config", "samples"), "--dry-run=server")
	if err := kubectl("apply", "--server-side", "-k", filepath.Join(root, "config", "samples")); err != nil {
		return err
	}
	waitFor("wait", "--for=jsonpath={.status.phase}=Active", "--timeout=1s", "-n", "default", "apikey/alice-ci", "apikey/alice-ci-next", "apikey/bob-reporting")
	waitFor("wait", "--for=jsonpath={.status.conditions[?(@.type==\"Ready\")].reason}=KeyLimitReached", "--timeout=1s", "-n", "default", "apikey/alice-extra")
	_ = kubectl("get", "apikeys", "-A")
	_ = kubectl("get", "secrets", "-n", "default", "-l", "app.kubernetes.io/managed-by=keymint")

	// Read as the administrator, never printed: the gateway step presents it
	// once revoked.
	revoked, err := secretKey(assets, kubeconfig, "alice-ci")
	if err != nil {
		return err
	}

	step("alice revokes alice-ci: its Secret goes and alice-extra, which waited, is issued")
	_ = kubectl("delete", "apikey", "-n", "default", "alice-ci", "--as=alice")
	waitFor("wait", "--for=jsonpath={.status.phase}=Active", "--timeout=1s", "-n", "default", "apikey/alice-extra")
	_ = kubectl("get", "apikeys", "-A")
	_ = kubectl("get", "events", "-n", "default", "--sort-by=.lastTimestamp", "--field-selector=involvedObject.kind=APIKey")

	step("alice sees her key through keymint's API, which records the view first; nobody reads a key's Secret directly, alice included")
	plugin := filepath.Join(root, "bin", "kubectl-apikey")
	for _, as := range []string{"alice", "bob"} {
		fmt.Printf("\n$ bin/kubectl-apikey reveal alice-ci-next -n default --as=%s\n", as)
		reveal := exec.Command(plugin, "--kubeconfig", kubeconfig, "reveal", "alice-ci-next", "-n", "default", "--as="+as)
		reveal.Stdout, reveal.Stderr = os.Stdout, os.Stdout
		_ = reveal.Run()
	}
	_ = kubectl("get", "secret", "-n", "default", "alice-ci-next", "--as=alice", "-o", "name")
	_ = kubectlAs(carol, "get", "secret", "-n", "default", "alice-ci-next", "-o", "name")

	step("a gateway asks the verifier (" + verifyURL + "/verify/ns/default) about alice-ci-next's key, and about alice-ci's, revoked above")
	if err := showGateway(assets, kubeconfig, verifyURL+"/verify/ns/default", revoked); err != nil {
		return err
	}

	step("carol, who cannot read it, switches alice-ci-next off and on again: the verifier refuses it at once, then accepts the same key")
	if err := showSwitch(plugin, relative(root, carol), carol, assets, kubeconfig, verifyURL+"/verify/ns/default"); err != nil {
		return err
	}

	step("carol exports the audit records with the plugin, through keymint's API (auditrecords; keymint-admin may list them)")
	exportAudit(root, carol)
	_ = kubectlAs(carol, "get", "auditrecords", "-n", "default")
	_ = kubectl("get", "events", "-n", "default", "--field-selector=reason=Viewed")

	step("bob rotates bob-reporting in place (it has spec.rotation): the same Secret holds a new key, and the gateway accepts the old one for the grace")
	if err := showRotation(plugin, assets, kubeconfig, verifyURL+"/verify/ns/default", kubectl); err != nil {
		return err
	}

	step("carol removes bob's access: his key is suspended and its Secret deleted")
	_ = kubectlAs(carol, "delete", "rolebinding", "bob-api-keys", "-n", "default")
	waitFor("wait", "--for=jsonpath={.status.phase}=Suspended", "--timeout=1s", "-n", "default", "apikey/bob-reporting")
	_ = kubectl("get", "apikeys", "-n", "default")

	step("the control plane and the operator keep running")
	fmt.Printf(`
Personas (in another shell, from %[1]s):
  demo-admin  the installer (system:masters): export KUBECONFIG=%[2]s
  carol       administrator of namespace default's keys (keymint-admin; reads no key):
              bin/k8s/kubectl --kubeconfig %[3]s get apikeys -n default
  alice, bob  key users (keymint-user in default; bob's access was removed above):
              act as them with --as=alice / --as=bob on demo-admin's kubeconfig

  export KUBECONFIG=%[2]s
  bin/k8s/kubectl get apikeys -A
  bin/k8s/kubectl describe apikey -n default alice-extra
  bin/kubectl-apikey list -n default --as=alice
  bin/kubectl-apikey reveal alice-ci-next -n default --as=alice
  bin/kubectl-apikey status alice-extra -n default --as=alice
  bin/kubectl-apikey audit export -n default --kubeconfig %[3]s
  bin/k8s/kubectl get auditrecords -n default --kubeconfig %[3]s
  cat %[4]s   # the audit trail

The verifier (forward auth): %[5]s/verify/ns/default (plain HTTP; Envoy's gRPC ext_authz is off here).
  curl -i -H "Authorization: Bearer $(bin/kubectl-apikey reveal alice-ci-next -n default --as=alice 2>/dev/null)" %[5]s/verify/ns/default

Stop with Ctrl-C (the control plane and its data go away with it).
`, root, relative(root, kubeconfig), relative(root, carol), relative(root, auditLog), verifyURL)

	up.Store(true)
	select {
	case <-ctx.Done():
	case <-exited:
		return fmt.Errorf("the manager exited; see .demo/manager.log")
	}
	return nil
}

// startKeymint registers keymint's API with the API server, starts the
// manager, and waits until the aggregator finds the API available.
func startKeymint(ctx context.Context, root, dir, auditLog string, env *envtest.Environment, admin *envtest.AuthenticatedUser,
	webhook *testenv.AuditWebhook, api *testenv.Aggregation) (verifyURL string, exited chan struct{}, err error) {
	adminClient, err := client.New(admin.Config(), client.Options{})
	if err != nil {
		return "", nil, err
	}
	if err := api.Register(ctx, env, adminClient, filepath.Join(root, "config")); err != nil {
		return "", nil, err
	}
	if verifyURL, exited, err = startManager(root, dir, auditLog, env, webhook, api); err != nil {
		return "", nil, err
	}
	return verifyURL, exited, api.WaitAvailable(ctx, admin.Config(), time.Minute)
}

// startManager runs bin/manager as its own process, with the identity its
// ServiceAccount has in a cluster, and the verifier on a free port.
func startManager(root, dir, auditLog string, env *envtest.Environment, webhook *testenv.AuditWebhook, api *testenv.Aggregation) (verifyURL string, exited chan struct{}, err error) {
	logFile, err := os.Create(filepath.Join(dir, "manager.log"))
	if err != nil {
		return "", nil, err
	}
	defer func() { _ = logFile.Close() }()
	_ = os.Remove(auditLog)
	verifyPort, err := testenv.FreePort()
	if err != nil {
		return "", nil, err
	}
	verifyURL = fmt.Sprintf("http://127.0.0.1:%d", verifyPort)
	manager := exec.Command(filepath.Join(root, "bin", "manager"),
		"--slot-namespace=keymint-system", "--health-probe-bind-address=0", "--metrics-bind-address=0",
		fmt.Sprintf("--verify-bind-address=127.0.0.1:%d", verifyPort), "--ext-authz-bind-address=0",
		"--audit-log-path="+auditLog, "--audit-bind-address="+webhook.Addr,
		"--audit-tls-cert-file="+webhook.CertFile, "--audit-tls-key-file="+webhook.KeyFile,
		"--audit-webhook-token-file="+webhook.TokenFile,
		"--api-bind-address="+api.Addr(), "--api-tls-cert-file="+api.CertFile, "--api-tls-key-file="+api.KeyFile,
		"--authentication-kubeconfig="+api.Kubeconfig, "--authorization-kubeconfig="+api.Kubeconfig)
	// The manager has an identity of its own, as its ServiceAccount has in
	// a cluster: the audit webhook leaves its requests out, not the
	// administrator's.
	operator, err := env.AddUser(envtest.User{Name: "keymint-manager", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return "", nil, err
	}
	operatorKubeconfig, err := operator.KubeConfig()
	if err != nil {
		return "", nil, err
	}
	managerKubeconfig := filepath.Join(dir, "manager.kubeconfig")
	if err := os.WriteFile(managerKubeconfig, operatorKubeconfig, 0o600); err != nil {
		return "", nil, err
	}
	manager.Env = append(os.Environ(), "KUBECONFIG="+managerKubeconfig)
	manager.Stdout, manager.Stderr = logFile, logFile
	if err := manager.Start(); err != nil {
		return "", nil, fmt.Errorf("starting bin/manager (run `make build`): %w", err)
	}
	exited = make(chan struct{})
	go func() { _ = manager.Wait(); close(exited) }()
	atStop(func() {
		step("stopping the manager")
		_ = manager.Process.Signal(syscall.SIGTERM)
		<-exited
	})

	return verifyURL, exited, nil
}

func step(s string) { fmt.Printf("\n==> %s\n", s) }

// relative is path as seen from root, for commands printed to be pasted.
func relative(root, path string) string {
	if rel, err := filepath.Rel(root, path); err == nil && !strings.HasPrefix(rel, "..") {
		return rel
	}
	return path
}

// tokenKubeconfig writes dir/<sa>.kubeconfig: demo-admin's cluster with a
// token of ServiceAccount keymint-system/<sa> (a day long), which both
// kubectl and the audit export authenticate with.
func tokenKubeconfig(assets, kubeconfig, dir, sa string) (string, error) {
	kubectlOut := func(args ...string) (string, error) {
		out, err := exec.Command(filepath.Join(assets, "kubectl"), append([]string{"--kubeconfig", kubeconfig}, args...)...).Output()
		return strings.TrimSpace(string(out)), err
	}
	token, err := kubectlOut("create", "token", sa, "-n", "keymint-system", "--duration=24h")
	if err != nil {
		return "", fmt.Errorf("creating %s's token: %w", sa, err)
	}
	path := filepath.Join(dir, sa+".kubeconfig")
	raw, err := kubectlOut("config", "view", "--minify", "--flatten", "-o", "jsonpath={.clusters[0].cluster.certificate-authority-data} {.clusters[0].cluster.server}")
	if err != nil {
		return "", err
	}
	ca, server, _ := strings.Cut(raw, " ")
	config := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: demo
  cluster: {server: %q, certificate-authority-data: %s}
users:
- name: %s
  user: {token: %s}
contexts:
- name: %s
  context: {cluster: demo, user: %s, namespace: default}
current-context: %s
`, server, ca, sa, token, sa, sa, sa)
	return path, os.WriteFile(path, []byte(config), 0o600)
}

// secretKey reads the key of the Secret name in namespace default, as the
// administrator, base64 as the Secret holds it.
func secretKey(assets, kubeconfig, name string) (string, error) {
	out, err := exec.Command(filepath.Join(assets, "kubectl"), "--kubeconfig", kubeconfig, "get", "secret", "-n", "default", name,
		"-o", "jsonpath={.data.api-key}").Output()
	if err != nil {
		return "", fmt.Errorf("reading %s's key: %w", name, err)
	}
	return string(out), nil
}

// showGateway presents alice-ci-next's key and the revoked one.
func showGateway(assets, kubeconfig, url, revoked string) error {
	current, err := secretKey(assets, kubeconfig, "alice-ci-next")
	if err != nil {
		return err
	}
	if err := askVerifier(url, "alice-ci-next", current); err != nil {
		return err
	}
	return askVerifier(url, "alice-ci (revoked)", revoked)
}

// showRotation has bob rotate bob-reporting in place with the plugin, then
// asks the verifier about the old key and the new one: both work, each
// named in X-Keymint-Key-Id.
func showRotation(plugin, assets, kubeconfig, url string, kubectl func(...string) error) error {
	old, err := secretKey(assets, kubeconfig, "bob-reporting")
	if err != nil {
		return err
	}
	args := []string{"rotate", "bob-reporting", "--in-place", "--grace", "10m", "-n", "default"}
	fmt.Printf("\n$ bin/kubectl-apikey %s   # as bob\n", strings.Join(args, " "))
	rotate := exec.Command(plugin, append(args, "--kubeconfig", kubeconfig, "--as", "bob")...)
	rotate.Stdout, rotate.Stderr = os.Stdout, os.Stdout
	if err := rotate.Run(); err != nil {
		return fmt.Errorf("rotating bob-reporting: %w", err)
	}
	_ = kubectl("get", "apikey", "-n", "default", "bob-reporting", "-o", "wide")
	current, err := secretKey(assets, kubeconfig, "bob-reporting")
	if err != nil {
		return err
	}
	if err := askVerifier(url, "bob-reporting (previous)", old); err != nil {
		return err
	}
	return askVerifier(url, "bob-reporting (renewed)", current)
}

// exportAudit has the administrator (kubeconfig carol) export the
// namespace's audit records as CSV, once the refused reads are in.
func exportAudit(root, carol string) {
	args := []string{"audit", "export", "-n", "default", "--format", "csv"}
	deadline := time.Now().Add(15 * time.Second)
	for {
		var out, errOut strings.Builder
		code := cli.Execute(&cli.Options{Streams: genericiooptions.IOStreams{In: os.Stdin, Out: &out, ErrOut: &errOut}},
			append(args, "--kubeconfig", carol))
		if code == cli.ExitOK && strings.Contains(out.String(), "ViewDenied") || time.Now().After(deadline) {
			fmt.Printf("\n$ bin/kubectl-apikey --kubeconfig %s %s\n%s%s", relative(root, carol), strings.Join(args, " "), out.String(), errOut.String())
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// showSwitch has the administrator (kubeconfig carol, shown as shown)
// switch alice-ci-next off and on with the plugin, and asks the verifier
// after each.
func showSwitch(plugin, shown, carol, assets, kubeconfig, url string) error {
	for _, args := range [][]string{{"deactivate", "alice-ci-next", "--reason", "is anyone still using it?"}, {"activate", "alice-ci-next"}} {
		shownArgs := slices.Clone(args)
		for i, a := range shownArgs {
			if strings.Contains(a, " ") {
				shownArgs[i] = "'" + a + "'"
			}
		}
		fmt.Printf("\n$ bin/kubectl-apikey --kubeconfig %s %s -n default\n", shown, strings.Join(shownArgs, " "))
		switchKey := exec.Command(plugin, append(args, "--kubeconfig", carol, "-n", "default")...)
		switchKey.Stdout, switchKey.Stderr = os.Stdout, os.Stdout
		_ = switchKey.Run()
		current, err := secretKey(assets, kubeconfig, "alice-ci-next")
		if err != nil {
			return err
		}
		if err := askVerifier(url, "alice-ci-next", current); err != nil {
			return err
		}
	}
	return nil
}

// askVerifier presents a key, base64 as a Secret holds it, to the verifier
// as a gateway does, and prints the answer, never the key.
func askVerifier(url, name, b64 string) error {
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return err
	}
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+string(key))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("asking the verifier: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	fmt.Printf("\n$ curl -i -H \"Authorization: Bearer <%s's key>\" %s\n%s\n", name, url, resp.Status)
	for _, h := range []string{"X-Keymint-User", "X-Keymint-Namespace", "X-Keymint-Name", "X-Keymint-Key-Id", "X-Keymint-Expires-At", "WWW-Authenticate"} {
		if v := resp.Header.Get(h); v != "" {
			fmt.Printf("%s: %s\n", h, v)
		}
	}
	if len(body) > 0 {
		fmt.Printf("\n%s\n", body)
	}
	return nil
}
