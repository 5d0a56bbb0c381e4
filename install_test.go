package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/app"
	"github.com/keymint/keymint/internal/testenv"
)

// tool runs a tool `make test` built into bin/ (or kubectl from the control
// plane), returning its combined output.
func tool(t *testing.T, stdin []byte, name string, args ...string) (string, error) {
	t.Helper()
	path := filepath.Join("bin", name)
	if name == "kubectl" {
		path = filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kubectl")
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("%s is missing: run `make test`, which builds it", path)
	}
	cmd := exec.Command(path, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// bareControlPlane starts a kube-apiserver and etcd with nothing of keymint
// installed, and returns an administrator's kubeconfig for it.
func bareControlPlane(t *testing.T) (*envtest.Environment, string) {
	t.Helper()
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Fatal("KUBEBUILDER_ASSETS is not set: run `make test`")
	}
	env := &envtest.Environment{}
	if _, err := env.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	return env, adminKubeconfig(t, env, "admin", "system:masters")
}

func adminKubeconfig(t *testing.T, env *envtest.Environment, name string, groups ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name+".kubeconfig")
	if err := testenv.WriteKubeconfig(env, path, name, groups...); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestInstallManifestIsCurrent: dist/install.yaml is what make
// build-installer writes today.
func TestInstallManifestIsCurrent(t *testing.T) {
	testenv.RequireControlPlane(t)
	out, err := exec.Command("hack/kustomize-image.sh", "bin/kustomize", "ghcr.io/keymint/keymint:v"+makeVar(t, "VERSION"), "default").Output()
	if err != nil {
		t.Fatalf("building the install manifest: %v", err)
	}
	current, err := os.ReadFile("dist/install.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, current) {
		t.Fatal("dist/install.yaml is stale: run `make build-installer`")
	}
}

// TestManagerSaysWhatIsMissing runs the manager against a bare API server,
// then with the CRD but without its namespace, then as an identity without
// its permissions: each time it says in one line what is missing and exits
// 1. Then the install manifest goes on server-side, twice, and the second
// apply changes nothing.
func TestManagerSaysWhatIsMissing(t *testing.T) {
	testenv.RequireControlPlane(t)
	env, kubeconfig := bareControlPlane(t)
	manager := func(kubeconfig string, args ...string) (string, int) {
		raw := []string{"--health-probe-bind-address=0", "--metrics-bind-address=0", "--verify-bind-address=0", "--ext-authz-bind-address=0"}
		cmd := startManagerProcess(t, kubeconfig, filepath.Join(t.TempDir(), "manager.log"), append(raw, args...)...)
		_ = cmd.Wait()
		logs, _ := os.ReadFile(cmd.Stdout.(*os.File).Name())
		var lines []string
		for l := range strings.SplitSeq(string(logs), "\n") {
			if strings.HasPrefix(l, "keymint: ") {
				lines = append(lines, l)
			}
		}
		if len(lines) != 1 {
			t.Fatalf("want one line that says what is missing, got:\n%s", logs)
		}
		return lines[0], cmd.ProcessState.ExitCode()
	}
	expect := func(line string, code int, want string) {
		t.Helper()
		if code != 1 || !strings.Contains(line, want) {
			t.Errorf("exit %d, %q; want exit 1 and %q", code, line, want)
		}
	}

	line, code := manager(kubeconfig)
	expect(line, code, "the APIKey CRD (apikeys.keymint.io) is not installed: run `make install`, or apply dist/install.yaml")

	if out, err := tool(t, nil, "kubectl", "--kubeconfig", kubeconfig, "apply", "--server-side", "-k", "config/crd"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	line, code = manager(kubeconfig, "--slot-namespace=nowhere")
	expect(line, code, "the slot namespace nowhere does not exist: create it (make install does), or set --slot-namespace")

	nobody := adminKubeconfig(t, env, "nobody")
	line, code = manager(nobody, "--slot-namespace=default")
	expect(line, code, "the manager's identity lacks get apikeys.keymint.io, list apikeys.keymint.io")
	expect(line, code, "create leases.coordination.k8s.io in default")

	install, err := os.ReadFile("dist/install.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := tool(t, install, "kubectl", "--kubeconfig", kubeconfig, "apply", "--server-side", "-f", "-"); err != nil {
		t.Fatalf("applying dist/install.yaml: %v\n%s", err, out)
	}
	versions := func() string {
		out, err := tool(t, install, "kubectl", "--kubeconfig", kubeconfig, "get", "-f", "-", "-o", "jsonpath={range .items[*]}{.kind}/{.metadata.name}={.metadata.resourceVersion}{\"\\n\"}{end}")
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		return out
	}
	before := versions()
	if out, err := tool(t, install, "kubectl", "--kubeconfig", kubeconfig, "apply", "--server-side", "-f", "-"); err != nil {
		t.Fatalf("applying dist/install.yaml again: %v\n%s", err, out)
	}
	if after := versions(); after != before {
		t.Errorf("a second apply changed objects:\n%s\nthen\n%s", before, after)
	}
	// The generated role without delegate, which the manager needs to
	// update other users' keys: the start-up check names it.
	admin, err := client.New(env.Config, client.Options{Scheme: app.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.ClusterRole{}
	if err := admin.Get(context.Background(), client.ObjectKey{Name: "keymint-manager"}, role); err != nil {
		t.Fatal(err)
	}
	without := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "keymint-manager-without-delegate"}}
	for _, r := range role.Rules {
		r.Verbs = slices.DeleteFunc(slices.Clone(r.Verbs), func(v string) bool { return v == keymintv1alpha1.VerbDelegate })
		without.Rules = append(without.Rules, r)
	}
	user := rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "no-delegate"}
	for _, obj := range []client.Object{without,
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "no-delegate"}, Subjects: []rbacv1.Subject{user},
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: without.Name}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "keymint-system", Name: "no-delegate"}, Subjects: []rbacv1.Subject{user},
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "keymint-manager"}},
	} {
		if err := admin.Create(context.Background(), obj); err != nil {
			t.Fatal(err)
		}
	}
	line, code = manager(adminKubeconfig(t, env, "no-delegate"), "--slot-namespace=keymint-system")
	expect(line, code, "the manager's identity lacks delegate apikeys.keymint.io: apply config/rbac")

	for _, want := range []string{"Namespace/keymint-system", "CustomResourceDefinition/apikeys.keymint.io", "Deployment/keymint-manager",
		"Service/keymint-metrics", "Service/keymint-verify", "ServiceAccount/auditor", "ClusterRole/keymint-auditor", "ValidatingAdmissionPolicy/", "MutatingAdmissionPolicy/"} {
		if !strings.Contains(before, want) {
			t.Errorf("dist/install.yaml has no %s", want)
		}
	}
}

// TestHelmChart: the chart's copies of config/ are current, helm lint is
// clean with and without the audit webhook, the schema refuses bad values,
// and what helm template renders is accepted by the API server.
func TestHelmChart(t *testing.T) {
	testenv.RequireControlPlane(t)
	synced := t.TempDir()
	if out, err := exec.Command("cp", "-r", "charts/keymint/.", synced).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if out, err := exec.Command("hack/chart-sync.sh", synced).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if out, err := exec.Command("diff", "-r", "charts/keymint", synced).CombinedOutput(); err != nil {
		t.Fatalf("charts/keymint is not in sync with config/: run `make manifests`\n%s", out)
	}
	audit := []string{"--set", "audit.enabled=true"}
	for _, set := range [][]string{nil, audit} {
		if out, err := tool(t, nil, "helm", append([]string{"lint", "--strict", "charts/keymint"}, set...)...); err != nil {
			t.Errorf("helm lint %v: %v\n%s", set, err, out)
		}
	}
	for _, bad := range []string{"replicas=0", "manager.maxKeysPerUser=0", "nosuchvalue=1"} {
		out, err := tool(t, nil, "helm", "template", "keymint", "charts/keymint", "--kube-version", "v1.37.2", "--set", bad)
		if err == nil || !strings.Contains(out, "schema") {
			t.Errorf("the schema accepted %s: %v\n%s", bad, err, out)
		}
	}
	_, kubeconfig := bareControlPlane(t)
	crds, err := tool(t, nil, "kubectl", "--kubeconfig", kubeconfig, "apply", "--server-side", "-f", "charts/keymint/crds")
	if err != nil {
		t.Fatalf("%v\n%s", err, crds)
	}
	if out, err := tool(t, nil, "kubectl", "--kubeconfig", kubeconfig, "create", "namespace", "keymint-system"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, set := range [][]string{nil, audit} {
		rendered, err := tool(t, nil, "helm", append([]string{"template", "keymint", "charts/keymint", "--namespace", "keymint-system", "--kube-version", "v1.37.2"}, set...)...)
		if err != nil {
			t.Fatalf("helm template %v: %v\n%s", set, err, rendered)
		}
		if out, err := tool(t, []byte(rendered), "kubectl", "--kubeconfig", kubeconfig, "apply", "--server-side", "--dry-run=server", "-f", "-"); err != nil {
			t.Errorf("the API server refused helm template %v: %v\n%s", set, err, out)
		}
	}
}

// TestDockerfileMatchesGoModAndMakefile: there is no engine here to build
// the image, so check that it builds with go.mod's Go, the Makefile's
// flags and every source, into a static non-root image with no shell.
func TestDockerfileMatchesGoModAndMakefile(t *testing.T) {
	dockerfile, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	gomod, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goVersion := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)[1]
	d := string(dockerfile)
	for _, want := range []string{
		"FROM golang:" + string(goVersion) + " AS builder",
		"go build " + makeVar(t, "GO_BUILD_FLAGS") + " -o manager .",
		"CGO_ENABLED=0",
		"COPY *.go ./",
		"COPY api/ api/", "COPY controllers/ controllers/", "COPY internal/ internal/",
		"FROM gcr.io/distroless/static:nonroot",
		"USER 65532:65532",
	} {
		if !strings.Contains(d, want) {
			t.Errorf("the Dockerfile lacks %q", want)
		}
	}
}

// makeVar is a variable of the Makefile, as make sees it.
func makeVar(t *testing.T, name string) string {
	t.Helper()
	out, err := exec.Command("make", "--no-print-directory", "print-"+name).Output()
	if err != nil {
		t.Fatalf("make print-%s: %v", name, err)
	}
	return strings.TrimSpace(string(out))
}
