package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/app"
	"github.com/keymint/keymint/internal/audit"
	"github.com/keymint/keymint/internal/keys"
	"github.com/keymint/keymint/internal/testenv"
)

var (
	env      *testenv.Env
	auditLog *audit.File
)

func TestMain(m *testing.M) {
	os.Exit(runE2E(m))
}

// runE2E starts a control plane and the real operator for the plugin's
// end-to-end tests.
func runE2E(m *testing.M) int {
	logf.SetLogger(logr.Discard()) // the operator's logs are not under test here
	if flag.Parse(); testing.Short() {
		return m.Run()
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir, err := os.MkdirTemp("", "keymint-cli-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	if env, err = testenv.Start(ctx, filepath.Join("..", "..", "config"), Scheme, testenv.WithAuditWebhook(dir), testenv.WithAggregation(dir)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	if auditLog, err = audit.OpenFile(filepath.Join(dir, "audit.log"), 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	o := app.TestOptions(testenv.SlotNamespace)
	o.Audit.Addr, o.Audit.CertFile, o.Audit.KeyFile, o.Audit.TokenFile = env.Audit.Addr, env.Audit.CertFile, env.Audit.KeyFile, env.Audit.TokenFile
	o.API.BindAddress, o.API.CertFile, o.API.KeyFile = env.API.Addr(), env.API.CertFile, env.API.KeyFile
	o.API.AuthenticationKubeconfig, o.API.AuthorizationKubeconfig = env.API.Kubeconfig, env.API.Kubeconfig
	mgr, err := app.New(ctx, env.Config, o, app.Deps{AuditLog: auditLog, AuditOut: audit.Multi{}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	go func() { _ = mgr.Start(ctx) }()
	if err := env.API.WaitAvailable(ctx, env.Config, time.Minute); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// user is someone with a kubeconfig of their own, holding keymint-user in a
// namespace of the test's own.
type user struct {
	name, namespace, kubeconfig string
}

func newUser(t *testing.T, name string) user {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "cli-"}}
	if err := env.Client.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return newUserIn(t, name, ns)
}

// newUserIn is newUser in an existing namespace.
func newUserIn(t *testing.T, name string, ns *corev1.Namespace) user {
	t.Helper()
	name = name + "@" + ns.Name
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "keys-" + strings.Split(name, "@")[0]},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "keymint-user"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: name}},
	}
	// Events are what status shows; users of a real cluster read them
	// through their namespace's roles. Their keys they see through
	// keymint's API, which keymint-user allows.
	secrets := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "read-events-" + strings.Split(name, "@")[0]},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"list"}},
		},
	}
	secretsBinding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "read-events-" + strings.Split(name, "@")[0]},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "read-events-" + strings.Split(name, "@")[0]},
		Subjects:   rb.Subjects,
	}
	for _, obj := range []client.Object{rb, secrets, secretsBinding} {
		if err := env.Client.Create(context.Background(), obj); err != nil {
			t.Fatal(err)
		}
	}
	authn, err := env.AddUser(envtest.User{Name: name}, env.Config)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := authn.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return user{name: name, namespace: ns.Name, kubeconfig: path}
}

// run runs kubectl apikey as u and returns its stdout, stderr and exit code.
func (u user) run(args ...string) (string, string, int) { return u.runWithInput("", args...) }

// runWithInput is run with stdin.
func (u user) runWithInput(stdin string, args ...string) (string, string, int) {
	out, errOut := &bytes.Buffer{}, &bytes.Buffer{}
	code := Execute(&Options{Streams: genericiooptions.IOStreams{In: bytes.NewBufferString(stdin), Out: out, ErrOut: errOut}},
		append(args, "--kubeconfig", u.kubeconfig, "-n", u.namespace))
	return out.String(), errOut.String(), code
}

// TestPluginLifecycle drives create → list → reveal → rotate → delete as a
// user would, against the API server with the operator running.
func TestPluginLifecycle(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	alice := newUser(t, "alice")

	out, errOut, code := alice.run("create", "ci", "--months", "12", "--wait")
	g.Expect(code).To(Equal(ExitOK), errOut)
	g.Expect(out).To(MatchRegexp(`^apikey/ci created for user alice@cli-\w+: Active as kid_\w+ in Secret ci\n$`))

	out, _, code = alice.run("list")
	g.Expect(code).To(Equal(ExitOK))
	lines := strings.Split(strings.TrimSpace(out), "\n")
	g.Expect(lines).To(HaveLen(2))
	g.Expect(strings.Fields(lines[0])).To(Equal([]string{"NAME", "USER", "PHASE", "KEY", "EXPIRES", "LAST", "USED", "AGE"}))
	g.Expect(lines[1]).To(MatchRegexp(`^ci\s+alice@cli-\w+\s+Active\s+kid_\w+\s+\d{4}-\d\d-\d\d \(in 12 months\)\s+never used\s+\d+s$`))

	out, _, code = alice.run("ls", "-o", "json")
	g.Expect(code).To(Equal(ExitOK))
	list := &keymintv1alpha1.APIKeyList{}
	g.Expect(json.Unmarshal([]byte(out), list)).To(Succeed())
	g.Expect(list.Items).To(HaveLen(1))
	keyID := list.Items[0].Status.KeyID

	// reveal: the key alone on stdout, the audit warning on stderr.
	out, errOut, code = alice.run("reveal", "ci")
	g.Expect(code).To(Equal(ExitOK))
	revealed := strings.TrimSuffix(out, "\n")
	g.Expect(keys.Validate(revealed)).To(Succeed(), "reveal prints a well-formed key")
	g.Expect(keys.Hash(revealed)).To(Equal(list.Items[0].Status.KeyHash), "and it is ci's key")
	g.Expect(errOut).To(ContainSubstring("Revealing key " + keyID + " of apikey/ci; keymint recorded this view."))
	g.Expect(viewsOf(t, alice.namespace, "ci")).To(Equal([]string{alice.name}), "keymint's record of the view, naming alice")

	// Nothing but reveal shows the key.
	for _, args := range [][]string{{"list"}, {"list", "-o", "yaml"}, {"status", "ci"}} {
		out, errOut, _ := alice.run(args...)
		g.Expect(strings.Contains(out+errOut, revealed)).To(BeFalse(), "%v shows the key", args)
	}

	// status explains the key.
	out, _, code = alice.run("status", "ci")
	g.Expect(code).To(Equal(ExitOK))
	g.Expect(out).To(MatchRegexp(`Phase:\s+Active`))
	g.Expect(out).To(MatchRegexp(`Key ID:\s+` + keyID))
	g.Expect(out).To(ContainSubstring("(in 12 months)"))
	g.Expect(out).To(MatchRegexp(`Ready\s+True\s+Active`))
	g.Eventually(func() string { out, _, _ := alice.run("status", "ci"); return out }).
		Should(MatchRegexp(`Normal\s+Issued\s+key ` + keyID))

	// rotate: a successor with the same expiration choice, then the old key goes.
	out, errOut, code = alice.run("rotate", "ci", "--successor", "ci-2027", "--delete-old")
	g.Expect(code).To(Equal(ExitOK), errOut)
	g.Expect(out).To(ContainSubstring("apikey/ci-2027 created as the successor of apikey/ci"))
	g.Expect(out).To(MatchRegexp(`apikey/ci-2027 is Active as kid_\w+ in Secret ci-2027`))
	g.Expect(out).To(ContainSubstring("Point your workloads at Secret ci-2027"))
	g.Expect(out).To(ContainSubstring("apikey/ci deleted: key " + keyID + " revoked"))
	succ := &keymintv1alpha1.APIKey{}
	g.Expect(env.Client.Get(context.Background(), client.ObjectKey{Namespace: alice.namespace, Name: "ci-2027"}, succ)).To(Succeed())
	g.Expect(*succ.Spec.Expiration.Months).To(Equal(int32(12)))

	// With two active keys there is no slot for a rollover: refused clearly.
	_, errOut, code = alice.run("create", "second", "--never", "--wait")
	g.Expect(code).To(Equal(ExitOK), errOut)
	_, errOut, code = alice.run("rotate", "second")
	g.Expect(code).To(Equal(ExitError))
	g.Expect(errOut).To(MatchRegexp(`^error: user alice@cli-\w+ already holds 2 active keys \(cli-\w+/ci-2027, cli-\w+/second\): a rollover needs a free slot; delete a key you no longer use first\n$`))

	// delete revokes.
	out, _, code = alice.run("delete", "second")
	g.Expect(code).To(Equal(ExitOK))
	g.Expect(out).To(MatchRegexp(`^apikey/second deleted: key kid_\w+ revoked\n$`))
	g.Eventually(func() string { out, _, _ := alice.run("list"); return out }).WithTimeout(10 * time.Second).ShouldNot(ContainSubstring("second"))

	// Keys of other users are refused by the API server, in one line.
	_, errOut, code = alice.run("create", "for-bob", "--never", "--user", "bob")
	g.Expect(code).To(Equal(ExitError))
	g.Expect(errOut).To(ContainSubstring("needs the delegate verb on apikeys"))
	g.Expect(strings.Count(errOut, "\n")).To(Equal(1))

	_, errOut, code = alice.run("reveal", "missing")
	g.Expect(code).To(Equal(ExitError))
	g.Expect(errOut).To(Equal("error: API key \"missing\" not found; `kubectl apikey list` shows your keys\n"))
}

// TestCreateShowsTheKey: create --show, as a user holding only
// keymint-user, prints the key alone on stdout once it is Active, with the
// rest and the audit notice on stderr.
func TestCreateShowsTheKey(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	bob := newUser(t, "bob")
	out, errOut, code := bob.run("create", "shown", "--never", "--show")
	g.Expect(code).To(Equal(ExitOK), errOut)
	shown := strings.TrimSuffix(out, "\n")
	g.Expect(keys.Validate(shown)).To(Succeed(), "stdout is the key alone")
	g.Expect(errOut).To(ContainSubstring("apikey/shown created"))
	g.Expect(errOut).To(ContainSubstring("keymint recorded this view"))
	listed, _, _ := bob.run("ls", "-o", "json")
	list := &keymintv1alpha1.APIKeyList{}
	g.Expect(json.Unmarshal([]byte(listed), list)).To(Succeed())
	g.Expect(list.Items).To(HaveLen(1))
	g.Expect(keys.Hash(shown)).To(Equal(list.Items[0].Status.KeyHash))
}

// TestDeactivateAndActivate: the owner switches her key off with a reason
// and on again; list and status show the state, reveal still shows her the
// key, and the same key comes back.
func TestDeactivateAndActivate(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	alice := newUser(t, "alice")
	_, errOut, code := alice.run("create", "ci", "--never", "--wait")
	g.Expect(code).To(Equal(ExitOK), errOut)
	key := &keymintv1alpha1.APIKey{}
	g.Expect(env.Client.Get(context.Background(), client.ObjectKey{Namespace: alice.namespace, Name: "ci"}, key)).To(Succeed())

	out, errOut, code := alice.run("deactivate", "ci", "--reason", "who still uses it?")
	g.Expect(code).To(Equal(ExitOK), errOut)
	g.Expect(out).To(Equal("apikey/ci deactivated: the verifier refuses key " + key.Status.KeyID +
		" from now on; its Secret and expiry are kept (kubectl apikey activate ci switches it on again)\n"))
	g.Eventually(func() string { out, _, _ := alice.run("list"); return out }).Should(MatchRegexp(`\nci\s+alice@cli-\w+\s+Inactive\s+` + key.Status.KeyID))
	out, _, code = alice.run("status", "ci")
	g.Expect(code).To(Equal(ExitOK))
	g.Expect(out).To(MatchRegexp(`State:\s+Inactive \(set by alice@cli-\w+\): who still uses it\?`))
	g.Expect(out).To(MatchRegexp(`Secret:\s+ci\n`))
	out, _, code = alice.run("reveal", "ci")
	g.Expect(code).To(Equal(ExitOK))
	g.Expect(keys.Hash(strings.TrimSpace(out))).To(Equal(key.Status.KeyHash), "the owner still sees her key")

	out, _, code = alice.run("deactivate", "ci", "--reason", "who still uses it?")
	g.Expect(code).To(Equal(ExitOK))
	g.Expect(out).To(Equal("apikey/ci is already Inactive\n"))
	_, errOut, code = alice.run("deactivate", "ci", "--reason", strings.Repeat("x", 257))
	g.Expect(code).To(Equal(ExitUsage))
	g.Expect(errOut).To(ContainSubstring("--reason is at most 256 characters"))

	out, errOut, code = alice.run("activate", "ci")
	g.Expect(code).To(Equal(ExitOK), errOut)
	g.Expect(out).To(Equal("apikey/ci activated: key " + key.Status.KeyID + " is valid again\n"))
	g.Eventually(func() string { out, _, _ := alice.run("status", "ci"); return out }).Should(MatchRegexp(`Phase:\s+Active`))
	got := &keymintv1alpha1.APIKey{}
	g.Expect(env.Client.Get(context.Background(), client.ObjectKeyFromObject(key), got)).To(Succeed())
	g.Expect(got.Status.KeyHash).To(Equal(key.Status.KeyHash), "the same key")
	g.Expect(got.Spec.StateReason).To(BeEmpty())
}

// TestRotateInPlace: the owner, holding only keymint-user, rotates a key
// in place under the self-service policy: the same Secret object holds a
// new key, the old one keeps working for the grace (status.previousKey),
// and status tells both. A malformed request is refused at admission with
// the annotation named; another user cannot rotate the key.
func TestRotateInPlace(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	alice := newUser(t, "alice")
	_, errOut, code := alice.run("create", "svc", "--months", "6", "--wait")
	g.Expect(code).To(Equal(ExitOK), errOut)
	before := &keymintv1alpha1.APIKey{}
	g.Expect(env.Client.Get(context.Background(), client.ObjectKey{Namespace: alice.namespace, Name: "svc"}, before)).To(Succeed())
	secret := &corev1.Secret{}
	g.Expect(env.Client.Get(context.Background(), client.ObjectKey{Namespace: alice.namespace, Name: "svc"}, secret)).To(Succeed())

	out, errOut, code := alice.run("rotate", "svc", "--in-place", "--grace", "30m")
	g.Expect(code).To(Equal(ExitOK), errOut)
	g.Expect(out).To(MatchRegexp(`apikey/svc now holds key kid_\w+ \(revision 2\) in Secret svc\.`))
	g.Expect(out).To(ContainSubstring("The previous key " + before.Status.KeyID + " keeps working until"))
	after := &keymintv1alpha1.APIKey{}
	g.Expect(env.Client.Get(context.Background(), client.ObjectKeyFromObject(before), after)).To(Succeed())
	g.Expect(after.Status.PreviousKey).NotTo(BeNil())
	g.Expect(after.Status.PreviousKey.ExpiresAt.Sub(after.Status.IssuedAt.Time)).To(Equal(30 * time.Minute))
	replaced := &corev1.Secret{}
	g.Expect(env.Client.Get(context.Background(), client.ObjectKey{Namespace: alice.namespace, Name: "svc"}, replaced)).To(Succeed())
	g.Expect(replaced.UID).NotTo(Equal(secret.UID), "a key without spec.rotation has an immutable Secret, which is replaced")
	g.Expect(replaced.Annotations[keymintv1alpha1.AnnotationRevision]).To(Equal("2"))

	out, _, code = alice.run("status", "svc")
	g.Expect(code).To(Equal(ExitOK))
	g.Expect(out).To(MatchRegexp(`Revision:\s+2`))
	g.Expect(out).To(MatchRegexp(`Previous key:\s+` + before.Status.KeyID + `, works until `))

	cfg, err := clientcmd.BuildConfigFromFlags("", alice.kubeconfig)
	g.Expect(err).NotTo(HaveOccurred())
	asAlice, err := client.New(cfg, client.Options{Scheme: env.Client.Scheme()})
	g.Expect(err).NotTo(HaveOccurred())
	err = asAlice.Patch(context.Background(), after.DeepCopy(), client.RawPatch(types.MergePatchType,
		[]byte(`{"metadata":{"annotations":{"keymint.io/rotate-grace":"soon"}}}`)))
	g.Expect(err).To(HaveOccurred())
	g.Expect(err.Error()).To(ContainSubstring("metadata.annotations[keymint.io/rotate-grace] must be a duration"))

	// Alice's renewed key holds both her slots until its previous key
	// stops working, and says so.
	_, errOut, code = alice.run("create", "third", "--never", "--wait")
	g.Expect(code).To(Equal(ExitError))
	g.Expect(errOut).To(ContainSubstring("/svc, " + alice.namespace + "/svc (its previous key))"))

	// create --renew makes a key with spec.rotation, whose Secret is mutable.
	carol := newUser(t, "carol")
	_, errOut, code = carol.run("create", "renewing", "--months", "3", "--renew-before", "240h", "--wait")
	g.Expect(code).To(Equal(ExitOK), errOut)
	renewing := &keymintv1alpha1.APIKey{}
	g.Expect(env.Client.Get(context.Background(), client.ObjectKey{Namespace: carol.namespace, Name: "renewing"}, renewing)).To(Succeed())
	g.Expect(renewing.Spec.Rotation).NotTo(BeNil())
	g.Expect(renewing.Spec.Rotation.RenewBefore.Duration).To(Equal(240 * time.Hour))
	g.Expect(renewing.Status.RenewalTime.Time).To(BeTemporally("==", renewing.Status.ExpiresAt.Add(-240*time.Hour)))
	mutable := &corev1.Secret{}
	g.Expect(env.Client.Get(context.Background(), client.ObjectKey{Namespace: carol.namespace, Name: "renewing"}, mutable)).To(Succeed())
	g.Expect(mutable.Immutable).To(HaveValue(BeFalse()))

	bob := newUserIn(t, "bob", &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: alice.namespace}})
	_, errOut, code = bob.run("rotate", "svc", "--in-place")
	g.Expect(code).To(Equal(ExitError))
	g.Expect(errOut).To(ContainSubstring("rotating another user's key needs the delegate verb"))
}

// viewsOf are the actors of the Viewed records of APIKey ns/name that
// keymint's API wrote (a reveal), in order.
func viewsOf(t *testing.T, ns, name string) []string {
	t.Helper()
	var actors []string
	err := auditLog.Each(audit.Filter{Namespace: ns, Name: name, Action: audit.ActionViewed}, func(r audit.Record) error {
		if strings.HasPrefix(r.ID, "keymint/reveal/") {
			actors = append(actors, r.Actor.Username)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return actors
}
