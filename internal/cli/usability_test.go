package cli

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/keys"
	"github.com/keymint/keymint/internal/testenv"
)

// runBare runs kubectl apikey with args alone.
func runBare(args ...string) (string, string, int) {
	out, errOut := &bytes.Buffer{}, &bytes.Buffer{}
	code := Execute(&Options{Streams: genericiooptions.IOStreams{In: &bytes.Buffer{}, Out: out, ErrOut: errOut}}, args)
	return out.String(), errOut.String(), code
}

// TestTheCommandLine: an unknown command exits 2, version prints the
// plugin's version, help and completion name the command as kubectl runs
// it, and completion offers the commands.
func TestTheCommandLine(t *testing.T) {
	g := NewWithT(t)
	_, errOut, code := runBare("frobnicate")
	g.Expect(code).To(Equal(ExitUsage), errOut)
	out, _, code := runBare("version")
	g.Expect(code).To(Equal(ExitOK))
	g.Expect(out).To(Equal("kubectl-apikey " + Version + "\n"))
	out, _, _ = runBare("version", "--short")
	g.Expect(out).To(Equal(Version + "\n"))
	out, _, _ = runBare("version", "-o", "json")
	g.Expect(out).To(ContainSubstring(`"pluginVersion": "` + Version + `"`))
	out, _, _ = runBare("list", "--help")
	g.Expect(out).To(ContainSubstring("One of: (wide, name, json, yaml"))
	// --action completes with the actions; NAME never with file names.
	out, _, code = runBare("__complete", "audit", "export", "--action", "View")
	g.Expect(code).To(Equal(ExitOK))
	g.Expect(out).To(ContainSubstring("Viewed\n"))
	g.Expect(out).To(ContainSubstring("ViewDenied\n"))
	out, _, _ = runBare("create", "--help")
	g.Expect(out).To(ContainSubstring("kubectl apikey create NAME"))
	g.Expect(out).NotTo(ContainSubstring("kubectl-apikey create"))
	out, _, code = runBare("__complete", "")
	g.Expect(code).To(Equal(ExitOK))
	for _, c := range []string{"create", "list", "reveal", "rotate", "delete", "status", "audit", "version"} {
		g.Expect(out).To(ContainSubstring(c + "\t"))
	}
	_, errOut, code = runBare("audit", "export", "--action", "Viewd")
	g.Expect(code).To(Equal(ExitUsage))
	g.Expect(errOut).To(ContainSubstring(`no record has action "Viewd"`))
	g.Expect(errOut).To(ContainSubstring("InvalidExpiration"))
	g.Expect(errOut).To(ContainSubstring("AccessDenied"))
	out, _, _ = runBare("audit", "export", "--help")
	g.Expect(out).To(ContainSubstring("InvalidExpiration"))
}

// TestCreateRefusesWhatWouldNeverWork: an expiry in the past or a month
// count out of range is refused before anything is created; a dry run
// says so; a missing namespace is named.
func TestCreateRefusesWhatWouldNeverWork(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	alice := newUser(t, "alice")
	_, errOut, code := alice.run("create", "past", "--expires-at", "2020-01-01T00:00:00Z")
	g.Expect(code).To(Equal(ExitUsage))
	g.Expect(errOut).To(ContainSubstring("--expires-at 2020-01-01T00:00:00Z is not in the future"))
	_, errOut, code = alice.run("create", "zero", "--months", "0")
	g.Expect(code).To(Equal(ExitUsage))
	g.Expect(errOut).To(ContainSubstring("--months must be 1-120"))
	_, errOut, _ = alice.run("list")
	g.Expect(errOut).To(ContainSubstring("No API keys found"), "nothing was created")

	out, _, code := alice.run("create", "planned", "--never", "--dry-run=client")
	g.Expect(code).To(Equal(ExitOK))
	g.Expect(out).To(HaveSuffix("(dry run)\n"))

	// A user cannot tell a missing namespace from one without a grant; an
	// administrator is told.
	_, errOut, code = runBare("create", "k", "--never", "--kubeconfig", alice.kubeconfig, "-n", "nosuch")
	g.Expect(code).To(Equal(ExitError))
	g.Expect(errOut).To(ContainSubstring("(check the namespace, -n; or ask an administrator for the keymint-user role there)"))
	admin := filepath.Join(t.TempDir(), "admin.kubeconfig")
	g.Expect(testenv.WriteKubeconfig(env.Environment, admin, "cli-admin", "system:masters")).To(Succeed())
	_, errOut, code = runBare("create", "k", "--never", "--user", alice.name, "--kubeconfig", admin, "-n", "nosuch")
	g.Expect(code).To(Equal(ExitError))
	g.Expect(errOut).To(ContainSubstring(`namespace "nosuch" does not exist; choose another with -n`))
}

// TestAnExpiredKeySaysWhatToDo: reveal names the next step, status names
// no Secret as if it existed, delete does not claim to revoke a live key;
// list --mine shows only the caller's keys.
func TestAnExpiredKeySaysWhatToDo(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	alice := newUser(t, "alice")
	at := time.Now().Add(3 * time.Second).UTC().Format(time.RFC3339)
	_, errOut, code := alice.run("create", "short", "--expires-at", at, "--wait")
	g.Expect(code).To(Equal(ExitOK), errOut)
	// Someone else's key in the same namespace, which alice's --mine hides.
	other := &keymintv1alpha1.APIKey{
		ObjectMeta: metav1.ObjectMeta{Namespace: alice.namespace, Name: "not-alices"},
		Spec:       keymintv1alpha1.APIKeySpec{User: "bob@" + alice.namespace, Expiration: keymintv1alpha1.Expiration{Never: new(true)}},
	}
	g.Expect(env.Client.Create(context.Background(), other)).To(Succeed())
	out, _, _ := alice.run("list", "--mine")
	g.Expect(out).To(ContainSubstring("short"))
	g.Expect(out).NotTo(ContainSubstring("not-alices"))

	g.Eventually(func() string { out, _, _ := alice.run("status", "short"); return out }, 20*time.Second).
		Should(MatchRegexp(`Phase:\s+Expired`))
	_, errOut, code = alice.run("reveal", "short")
	g.Expect(code).To(Equal(ExitError))
	g.Expect(errOut).To(ContainSubstring("expired at " + at + " and its key is gone; make a new one: kubectl apikey rotate short"))
	out, _, _ = alice.run("status", "short")
	g.Expect(out).To(ContainSubstring("(Secret short was deleted when the key became Expired)"))
	out, _, code = alice.run("delete", "short")
	g.Expect(code).To(Equal(ExitOK))
	g.Expect(out).To(MatchRegexp(`apikey/short deleted; its key kid_\w+ was already Expired`))
	g.Expect(strings.Contains(out, "revoked")).To(BeFalse())
}

// TestCreateAndRotateAtTheCap: a user holding two Active keys is refused at
// once, by create --wait and by rotate, and no object is left; --queue
// keeps the key waiting for a slot. A key whose expiry has passed rotates
// into a successor with an expiry of its own, and --delete-old says what
// is next in the order things happen.
func TestCreateAndRotateAtTheCap(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	alice := newUser(t, "alice")
	for _, name := range []string{"one", "two"} {
		_, errOut, code := alice.run("create", name, "--never", "--wait")
		g.Expect(code).To(Equal(ExitOK), errOut)
	}
	start := time.Now()
	_, errOut, code := alice.run("create", "three", "--never", "--wait")
	g.Expect(code).To(Equal(ExitError))
	g.Expect(time.Since(start)).To(BeNumerically("<", 15*time.Second), "refused at once, not after the timeout")
	g.Expect(errOut).To(ContainSubstring("already holds 2 active keys (" + alice.namespace + "/one, " + alice.namespace + "/two)"))
	g.Expect(errOut).To(ContainSubstring("or pass --queue to wait for one; apikey/three was not kept"))
	g.Eventually(func() string { _, errOut, _ := alice.run("status", "three"); return errOut }).
		Should(ContainSubstring(`API key "three" not found`))

	_, errOut, code = alice.run("rotate", "one")
	g.Expect(code).To(Equal(ExitError))
	g.Expect(errOut).To(ContainSubstring("a rollover needs a free slot"))
	out, _, _ := alice.run("list")
	g.Expect(strings.Count(out, "\n")).To(Equal(3), "rotate left nothing behind:\n%s", out)

	out, errOut, code = alice.run("create", "queued", "--never", "--wait", "--queue", "--timeout", "2s")
	listed, _, _ := alice.run("list")
	g.Expect(code).To(Equal(ExitError), "it is still waiting: %s %s\n%s", out, errOut, listed)
	out, _, _ = alice.run("status", "queued")
	g.Expect(out).To(MatchRegexp(`Phase:\s+Pending`))
	out, _, code = alice.run("delete", "queued")
	g.Expect(code).To(Equal(ExitOK))
	g.Expect(out).To(Equal("apikey/queued deleted; it had no key yet\n"), "no key was revoked")
	_, _, code = alice.run("delete", "two")
	g.Expect(code).To(Equal(ExitOK))

	at := time.Now().Add(2 * time.Second).UTC().Format(time.RFC3339)
	_, errOut, code = alice.run("create", "dated", "--expires-at", at, "--wait")
	g.Expect(code).To(Equal(ExitOK), errOut)
	g.Eventually(func() string { out, _, _ := alice.run("status", "dated"); return out }, 20*time.Second).
		Should(MatchRegexp(`Phase:\s+Expired`))
	_, errOut, code = alice.run("rotate", "dated", "--successor", "dated-2")
	g.Expect(code).To(Equal(ExitUsage))
	g.Expect(errOut).To(ContainSubstring("which has passed: give its successor an expiry with --months N"))
	out, errOut, code = alice.run("rotate", "dated", "--successor", "dated-2", "--months", "12", "--delete-old")
	g.Expect(code).To(Equal(ExitOK), errOut)
	g.Expect(out).To(MatchRegexp(`(?s)apikey/dated-2 is Active as kid_\w+ in Secret dated-2\.\napikey/dated deleted.*\nNext:\n  1\. Point your workloads at Secret dated-2`))
	g.Expect(out).NotTo(ContainSubstring("delete the old one"))
}

// TestColumnsTellStatesApart: kubectl get shows Ready and its reason, and
// never for a key that never expires; the plugin's -o wide does too.
func TestColumnsTellStatesApart(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	alice := newUser(t, "alice")
	_, errOut, code := alice.run("create", "forever", "--never", "--wait")
	g.Expect(code).To(Equal(ExitOK), errOut)
	out, err := exec.Command(filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kubectl"), "--kubeconfig", alice.kubeconfig,
		"get", "apikeys", "-n", alice.namespace).CombinedOutput()
	g.Expect(err).NotTo(HaveOccurred(), string(out))
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	g.Expect(strings.Fields(lines[0])).To(Equal([]string{"NAME", "USER", "PHASE", "READY", "REASON", "KEYID", "EXPIRES", "AGE"}))
	g.Expect(lines[1]).To(MatchRegexp(`^forever\s+alice@\S+\s+Active\s+True\s+Active\s+kid_\w+\s+never\s+\d+s$`))

	wide, _, code := alice.run("list", "-o", "wide")
	g.Expect(code).To(Equal(ExitOK))
	g.Expect(wide).To(MatchRegexp(`NAME\s+USER\s+PHASE\s+READY\s+REASON\s+KEY\s+EXPIRES\s+LAST USED\s+RENEWS\s+SECRET\s+AGE`))
	g.Expect(wide).To(MatchRegexp(`forever\s+alice@\S+\s+Active\s+True\s+Active\s+kid_\w+\s+never\s+never used\s+-\s+forever\s+`))
}

// TestKubectlCreateOfARevealGivesTheKey: plain kubectl, with alice's
// client-certificate kubeconfig, creates an APIKeyReveal from a file and
// gets the key the plugin reveals; she cannot read the Secret itself.
func TestKubectlCreateOfARevealGivesTheKey(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	alice := newUser(t, "alice")
	_, errOut, code := alice.run("create", "ci", "--never", "--wait")
	g.Expect(code).To(Equal(ExitOK), errOut)
	revealed, errOut, code := alice.run("reveal", "ci")
	g.Expect(code).To(Equal(ExitOK), errOut)
	file := filepath.Join(t.TempDir(), "reveal.yaml")
	g.Expect(os.WriteFile(file, []byte("apiVersion: audit.keymint.io/v1alpha1\nkind: APIKeyReveal\nspec:\n  name: ci\n"), 0o600)).To(Succeed())
	kubectl := filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kubectl")
	// kubectl looks for a PATCH of the kind in the OpenAPI to decide how
	// to validate; a create-only kind (as SelfSubjectReview) has none, and
	// it then lists CRDs, which a user may not: --validate=false, and the
	// server validates.
	out, err := exec.Command(kubectl, "--kubeconfig", alice.kubeconfig, "create", "-n", alice.namespace, "-f", file,
		"--validate=false", "-o", "jsonpath={.status.key}").Output()
	g.Expect(err).NotTo(HaveOccurred(), "%s", stderrOf(err))
	g.Expect(string(out)).To(Equal(strings.TrimSpace(revealed)))
	out, err = exec.Command(kubectl, "--kubeconfig", alice.kubeconfig, "get", "secret", "ci", "-n", alice.namespace).CombinedOutput()
	g.Expect(err).To(HaveOccurred())
	g.Expect(string(out)).To(ContainSubstring("Forbidden"))
}

// stderrOf is what a command that failed wrote to stderr.
func stderrOf(err error) string {
	if exit, ok := errors.AsType[*exec.ExitError](err); ok {
		return string(exit.Stderr)
	}
	return ""
}

// TestSomeoneElsesKeySaysSo: a user who reveals or rotates another user's
// key is told whose it is, not given a raw RBAC refusal or a message about
// her own keys; create without --wait says when the key waits, and why.
func TestSomeoneElsesKeySaysSo(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	alice := newUser(t, "alice")
	bob := newUserIn(t, "bob", &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: alice.namespace}})
	for _, name := range []string{"one", "two"} {
		_, errOut, code := alice.run("create", name, "--never", "--wait")
		g.Expect(code).To(Equal(ExitOK), errOut)
	}
	_, errOut, code := bob.run("reveal", "one")
	g.Expect(code).To(Equal(ExitError))
	g.Expect(errOut).To(Equal("error: apikey/one belongs to user " + alice.name + ", not you (" + bob.name + "): only a key's owner can reveal it\n"))
	_, errOut, code = bob.run("rotate", "one")
	g.Expect(code).To(Equal(ExitError))
	g.Expect(errOut).To(ContainSubstring("apikey/one belongs to user " + alice.name + ", not you (" + bob.name + "): rotating another user's key needs the delegate verb"))

	out, errOut, code := alice.run("create", "third", "--never")
	g.Expect(code).To(Equal(ExitOK), errOut)
	g.Expect(out).To(ContainSubstring("apikey/third created for user " + alice.name + ": it waits (Pending): user " + alice.name + " already holds 2 active keys"))
}

// TestCheckFindsTheOwnerOfALeakedKey: check reads a key from stdin only
// and validates it offline; --find, as a viewer who may list APIKeys but
// read no Secret, names the owner of a key taken from a Secret, and
// nothing for a well-formed key no APIKey holds.
func TestCheckFindsTheOwnerOfALeakedKey(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	alice := newUser(t, "alice")
	_, errOut, code := alice.run("create", "leaky", "--never", "--wait")
	g.Expect(code).To(Equal(ExitOK), errOut)
	leaked, _, code := alice.run("reveal", "leaky")
	g.Expect(code).To(Equal(ExitOK))
	viewer := newUserIn(t, "viewer", &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: alice.namespace}})
	bindViewer(t, alice.namespace, viewer.name)

	_, errOut, code = viewer.run("check", leaked)
	g.Expect(code).To(Equal(ExitUsage), "a key on the command line")
	g.Expect(errOut).To(ContainSubstring("never from the command line"))
	g.Expect(strings.Contains(errOut, strings.TrimSpace(leaked))).To(BeFalse(), "the key was echoed")

	out, errOut, code := viewer.runWithInput(leaked, "check", "--find")
	g.Expect(code).To(Equal(ExitOK), errOut)
	g.Expect(out).To(ContainSubstring("a well-formed keymint key"))
	g.Expect(out).To(MatchRegexp(`Namespace:\s+` + alice.namespace))
	g.Expect(out).To(MatchRegexp(`Name:\s+leaky`))
	g.Expect(out).To(MatchRegexp(`User:\s+` + regexp.QuoteMeta(alice.name)))
	g.Expect(out).To(MatchRegexp(`State:\s+Active`))
	g.Expect(out).To(ContainSubstring("kubectl apikey deactivate leaky -n " + alice.namespace + " --reason 'leaked'"))
	g.Expect(out).To(ContainSubstring("kubectl apikey delete leaky -n " + alice.namespace))
	g.Expect(strings.Contains(out+errOut, strings.TrimSpace(leaked))).To(BeFalse(), "the key was echoed")

	other, err := keys.Mint()
	g.Expect(err).NotTo(HaveOccurred())
	out, _, code = viewer.runWithInput(other.Value+"\n", "check", "--find")
	g.Expect(code).To(Equal(ExitOK))
	g.Expect(out).To(ContainSubstring("no APIKey you may list (namespace " + alice.namespace + ") holds it"))

	broken := strings.TrimSpace(leaked)
	broken = broken[:len(broken)-2] + "00"
	_, errOut, code = viewer.runWithInput(broken, "check")
	g.Expect(code).To(Equal(ExitError))
	g.Expect(errOut).To(ContainSubstring("not a keymint key"))
}

// bindViewer lets user list APIKeys in ns (keymint-viewer), nothing more.
func bindViewer(t *testing.T, ns, user string) {
	t.Helper()
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "viewer-" + strings.Split(user, "@")[0]},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "keymint-viewer"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
	}
	if err := env.Client.Create(context.Background(), rb); err != nil {
		t.Fatal(err)
	}
}
