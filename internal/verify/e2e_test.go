package verify_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	. "github.com/onsi/gomega"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/app"
	"github.com/keymint/keymint/internal/audit"
	"github.com/keymint/keymint/internal/keys"
	"github.com/keymint/keymint/internal/testenv"
	"github.com/keymint/keymint/internal/verify"
)

var (
	scheme = runtime.NewScheme()
	env    *testenv.Env
	// clk is the manager's and the verifier's clock.
	clk = clocktesting.NewFakeClock(time.Now().Truncate(time.Second))
	// verifyURL and extAuthzAddr are where the manager verifies keys.
	verifyURL, extAuthzAddr string
	trail                   = &testenv.Trail{}
	ctx                     = context.Background()
	// logs holds every line the manager logs; presented holds every key
	// the tests present, so that TestNoKeyOrHashIsLogged can look for them.
	logs      = &testenv.Buffer{}
	presented sync.Map
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	logf.SetLogger(zap.New(zap.WriteTo(logs), zap.Level(zapcore.Level(-5))))
	if flag.Parse(); testing.Short() {
		return m.Run()
	}
	SetDefaultEventuallyTimeout(20 * time.Second)
	SetDefaultEventuallyPollingInterval(20 * time.Millisecond)
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(keymintv1alpha1.AddToScheme(scheme))
	var err error
	if env, err = testenv.Start(ctx, filepath.Join("..", "..", "config"), scheme); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	stop, err := startManager()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stop()
	return m.Run()
}

// startManager runs the controller and the verifier, on the fake clock,
// with the verifier on free ports.
func startManager() (func(), error) {
	httpPort, err := testenv.FreePort()
	if err != nil {
		return nil, err
	}
	grpcPort, err := testenv.FreePort()
	if err != nil {
		return nil, err
	}
	verifyURL = fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	extAuthzAddr = fmt.Sprintf("127.0.0.1:%d", grpcPort)
	o := app.TestOptions(testenv.SlotNamespace)
	o.Verify.HTTPAddr, o.Verify.GRPCAddr = fmt.Sprintf("127.0.0.1:%d", httpPort), extAuthzAddr
	o.Verify.LastUsedInterval, o.ExpiryWarning = time.Hour, 2*time.Hour
	mctx, cancel := context.WithCancel(ctx)
	mgr, err := app.New(mctx, env.Config, o, app.Deps{Clock: clk, AuditOut: trail})
	if err != nil {
		cancel()
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			fmt.Fprintln(os.Stderr, "manager:", err)
		}
	}, nil
}

// namespace creates a namespace; open ones let every user hold keys.
func namespace(t *testing.T, open bool) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "verify-"}}
	if err := env.Client.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	if open {
		bind(t, ns.Name, "everyone", rbacv1.Subject{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "system:authenticated"})
	}
	return ns.Name
}

func bind(t *testing.T, ns, name string, subject rbacv1.Subject) *rbacv1.RoleBinding {
	t.Helper()
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "keymint-user"},
		Subjects:   []rbacv1.Subject{subject},
	}
	if err := env.Client.Create(ctx, rb); err != nil {
		t.Fatal(err)
	}
	return rb
}

// issued is an Active key and its plaintext, read as an administrator.
type issued struct {
	key   *keymintv1alpha1.APIKey
	value string
}

func issue(t *testing.T, ns, name, user string, exp keymintv1alpha1.Expiration) issued {
	t.Helper()
	g := NewWithT(t)
	key := &keymintv1alpha1.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: keymintv1alpha1.APIKeySpec{User: user, Expiration: exp}}
	g.Expect(env.Client.Create(ctx, key)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(key), key)).To(Succeed())
		g.Expect(key.Status.Phase).To(Equal(keymintv1alpha1.PhaseActive), "%s: %+v", name, key.Status.Conditions)
	}).Should(Succeed())
	secret := &corev1.Secret{}
	g.Expect(env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: key.Status.SecretName}, secret)).To(Succeed())
	value := string(secret.Data[keymintv1alpha1.DataKey])
	presented.Store(value, true)
	return issued{key: key, value: value}
}

func never() keymintv1alpha1.Expiration { return keymintv1alpha1.Expiration{Never: new(true)} }

func at(t time.Time) keymintv1alpha1.Expiration {
	return keymintv1alpha1.Expiration{At: &metav1.Time{Time: t}}
}

// ask sends a forward-auth request to url with the key in header (none
// when key is empty), and returns the status, the reason and the headers.
func ask(g Gomega, url, header, key string) (int, string, http.Header) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	g.Expect(err).NotTo(HaveOccurred())
	switch {
	case key == "":
	case header == "Authorization":
		req.Header.Set("Authorization", "Bearer "+key)
	default:
		req.Header.Set(header, key)
	}
	resp, err := http.DefaultClient.Do(req)
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	g.Expect(err).NotTo(HaveOccurred())
	var refusal struct{ Reason string }
	if resp.StatusCode != http.StatusOK {
		g.Expect(json.Unmarshal(body, &refusal)).To(Succeed(), string(body))
		want := `Bearer realm="keymint", error="invalid_token"`
		if refusal.Reason == "missing" { // RFC 6750 3.1: no error code when no token was presented
			want = `Bearer realm="keymint"`
		}
		g.Expect(resp.Header.Get("WWW-Authenticate")).To(Equal(want))
	}
	return resp.StatusCode, refusal.Reason, resp.Header
}

// keyStates issues keys in every state a gateway must tell apart, in
// namespace ns (and one in another namespace).
type keyStates struct {
	ns                                            string
	valid, expired, deleted, suspended, elsewhere issued
	validUser                                     string
}

func newKeyStates(t *testing.T) *keyStates {
	t.Helper()
	g := NewWithT(t)
	s := &keyStates{ns: namespace(t, true)}
	s.validUser = "alice@" + s.ns
	s.valid = issue(t, s.ns, "valid", s.validUser, never())
	s.expired = issue(t, s.ns, "expiring", "bob@"+s.ns, at(clk.Now().Add(time.Hour)))
	s.deleted = issue(t, s.ns, "deleted", "carol@"+s.ns, never())
	s.elsewhere = issue(t, namespace(t, true), "elsewhere", "erin@"+s.ns, never())

	restricted := namespace(t, false)
	grant := bind(t, restricted, "dave", rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "dave@" + s.ns})
	s.suspended = issue(t, restricted, "suspended", "dave@"+s.ns, never())
	g.Expect(env.Client.Delete(ctx, grant)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(s.suspended.key), s.suspended.key)).To(Succeed())
		g.Expect(s.suspended.key.Status.Phase).To(Equal(keymintv1alpha1.PhaseSuspended))
	}).Should(Succeed())
	g.Expect(env.Client.Delete(ctx, s.deleted.key)).To(Succeed())
	g.Eventually(func(g Gomega) {
		code, _, _ := ask(g, verifyURL+"/verify", "X-API-Key", s.deleted.value)
		g.Expect(code).To(Equal(http.StatusUnauthorized))
	}).Should(Succeed())
	return s
}

// TestVerifyOverHTTP: every reason, with its JSON body, and the identity
// headers of a valid key; expiry is exact at the door, before the
// controller has run.
func TestVerifyOverHTTP(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	s := newKeyStates(t)
	scoped := verifyURL + "/verify/ns/" + s.ns

	code, _, h := ask(g, verifyURL+"/verify", "Authorization", s.valid.value)
	g.Expect(code).To(Equal(http.StatusOK))
	g.Expect(h.Get("X-Keymint-User")).To(Equal(s.validUser))
	g.Expect(h.Get("X-Keymint-Namespace")).To(Equal(s.ns))
	g.Expect(h.Get("X-Keymint-Name")).To(Equal("valid"))
	g.Expect(h.Get("X-Keymint-Key-Id")).To(Equal(s.valid.key.Status.KeyID))
	g.Expect(h.Get("X-Keymint-Expires-At")).To(Equal("never"))
	code, _, h = ask(g, scoped+"/any/path", "X-API-Key", s.expired.value)
	g.Expect(code).To(Equal(http.StatusOK))
	g.Expect(h.Get("X-Keymint-Expires-At")).To(Equal(s.expired.key.Status.ExpiresAt.UTC().Format(time.RFC3339)))

	unknown, err := keys.Mint()
	g.Expect(err).NotTo(HaveOccurred())
	presented.Store(unknown.Value, true)
	for _, tt := range []struct {
		name, url, key, want string
	}{
		{"missing", scoped, "", "missing"},
		{"malformed", scoped, "kmk_not-a-key", "malformed"},
		{"bad checksum", scoped, s.valid.value[:len(s.valid.value)-1] + "x", "malformed"},
		{"never issued", scoped, unknown.Value, "unknown"},
		{"APIKey deleted", scoped, s.deleted.value, "unknown"},
		{"suspended", verifyURL + "/verify", s.suspended.value, "suspended"},
		{"another namespace", scoped, s.elsewhere.value, "wrong_namespace"},
	} {
		g.Eventually(func(g Gomega) {
			code, reason, _ := ask(g, tt.url, "Authorization", tt.key)
			g.Expect(code).To(Equal(http.StatusUnauthorized), tt.name)
			g.Expect(reason).To(Equal(tt.want), tt.name)
		}).Should(Succeed())
	}

	// A path that is not one of the three forms is refused with 404, never
	// read as "every namespace": a gateway's typo fails closed.
	for _, path := range []string{"/verify/NS/" + s.ns, "/verify/namespaces/" + s.ns, "/verify/ns" + s.ns, "/verify/" + s.ns} {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, verifyURL+path, nil)
		g.Expect(err).NotTo(HaveOccurred())
		req.Header.Set("Authorization", "Bearer "+s.elsewhere.value)
		resp, err := http.DefaultClient.Do(req)
		g.Expect(err).NotTo(HaveOccurred())
		body, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(resp.StatusCode).To(Equal(http.StatusNotFound), path)
		g.Expect(string(body)).To(Equal(verify.UnknownPathMessage), path)
	}

	// At its expiry the key is refused at once: the controller has not
	// run since the clock moved.
	clk.SetTime(s.expired.key.Status.ExpiresAt.Time)
	code, reason, _ := ask(g, scoped, "X-API-Key", s.expired.value)
	g.Expect(code).To(Equal(http.StatusUnauthorized))
	g.Expect(reason).To(Equal("expired"))
	// Still expired once the controller, woken by a change (its requeue
	// waits on the real clock), has deleted its Secret.
	poke := client.RawPatch("application/merge-patch+json", []byte(`{"metadata":{"annotations":{"test.keymint.io/poke":"1"}}}`))
	g.Expect(env.Client.Patch(ctx, s.expired.key.DeepCopy(), poke)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(s.expired.key), s.expired.key)).To(Succeed())
		g.Expect(s.expired.key.Status.Phase).To(Equal(keymintv1alpha1.PhaseExpired))
	}).Should(Succeed())
	_, reason, _ = ask(g, scoped, "X-API-Key", s.expired.value)
	g.Expect(reason).To(Equal("expired"))
	g.Eventually(func() int { return len(trail.Of(audit.ActionRejectedUse, "expiring")) }).Should(Equal(1))
	// Issued an hour before its expiry, inside the 2 h warning window.
	g.Expect(trail.Of(audit.ActionExpiringSoon, "expiring")).To(HaveLen(1))
	g.Eventually(func() int { return len(trail.Of(audit.ActionRejectedUse, "suspended")) }).Should(Equal(1))
}

// extAuthzClient is a gRPC client of the manager's ext_authz service,
// closed when the test ends.
func extAuthzClient(t *testing.T) authv3.AuthorizationClient {
	t.Helper()
	conn, err := grpc.NewClient(extAuthzAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return authv3.NewAuthorizationClient(conn)
}

// checkRequest is Envoy's Check of a request to /api with headers, from a
// route whose keymint-namespace context extension is scope (none if "").
func checkRequest(headers map[string]string, scope string) *authv3.CheckRequest {
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Headers: headers, Path: "/api"}},
	}}
	if scope != "" {
		req.Attributes.ContextExtensions = map[string]string{verify.ContextExtensionNamespace: scope}
	}
	return req
}

// TestVerifyOverGRPC: Envoy's Check, through a real gRPC client on the
// go-control-plane types.
func TestVerifyOverGRPC(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	ns := namespace(t, true)
	valid := issue(t, ns, "grpc", "frank@"+ns, never())
	authz := extAuthzClient(t)
	check := func(headers map[string]string, scope string) *authv3.CheckResponse {
		resp, err := authz.Check(ctx, checkRequest(headers, scope))
		g.Expect(err).NotTo(HaveOccurred())
		return resp
	}

	ok := check(map[string]string{"authorization": "Bearer " + valid.value, "x-keymint-user": "forged"}, ns)
	g.Expect(codes.Code(ok.GetStatus().GetCode())).To(Equal(codes.OK))
	set := map[string]string{}
	for _, h := range ok.GetOkResponse().GetHeaders() {
		set[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
		g.Expect(h.GetAppendAction().String()).To(Equal("OVERWRITE_IF_EXISTS_OR_ADD"), "a forged header is replaced")
	}
	g.Expect(set).To(Equal(map[string]string{
		"X-Keymint-User": "frank@" + ns, "X-Keymint-Namespace": ns, "X-Keymint-Name": "grpc",
		"X-Keymint-Key-Id": valid.key.Status.KeyID, "X-Keymint-Expires-At": "never",
	}))
	g.Expect(ok.GetOkResponse().GetHeadersToRemove()).To(ConsistOf("authorization", "x-api-key"), "the backend never sees the key")

	for _, tt := range []struct {
		name    string
		headers map[string]string
		scope   string
		want    string
	}{
		{"missing", map[string]string{}, "", "missing"},
		{"malformed", map[string]string{"x-api-key": "nope"}, "", "malformed"},
		{"another namespace", map[string]string{"x-api-key": valid.value}, "other", "wrong_namespace"},
	} {
		denied := check(tt.headers, tt.scope)
		g.Expect(codes.Code(denied.GetStatus().GetCode())).To(Equal(codes.Unauthenticated), tt.name)
		g.Expect(denied.GetDeniedResponse().GetStatus().GetCode().String()).To(Equal("Unauthorized"), tt.name)
		g.Expect(denied.GetDeniedResponse().GetBody()).To(Equal(`{"reason":"`+tt.want+`"}`), tt.name)
	}
}

// TestARevokedKeyIsRefusedWithinASecond measures, for keys revoked by
// deleting their APIKey and by deleting their Secret, the time from the
// delete call to the first refusal.
func TestARevokedKeyIsRefusedWithinASecond(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	ns := namespace(t, true)
	var delays []time.Duration
	for i := range 10 {
		k := issue(t, ns, fmt.Sprintf("revoke-%d", i), fmt.Sprintf("gina-%d@%s", i, ns), never())
		var target client.Object = k.key
		if i%2 == 1 {
			target = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: k.key.Status.SecretName}}
		}
		start := time.Now()
		g.Expect(env.Client.Delete(ctx, target)).To(Succeed())
		g.Eventually(func(g Gomega) {
			code, _, _ := ask(g, verifyURL+"/verify", "X-API-Key", k.value)
			g.Expect(code).To(Equal(http.StatusUnauthorized))
		}).WithPolling(5 * time.Millisecond).Should(Succeed())
		delays = append(delays, time.Since(start))
	}
	slices.Sort(delays)
	t.Logf("delete → first refusal: p50 %v, max %v", delays[len(delays)/2], delays[len(delays)-1])
	g.Expect(delays[len(delays)-1]).To(BeNumerically("<=", time.Second))
}

// TestAnInactiveKeyIsRefusedAndBackWithinASecond: a key switched off is
// refused (reason inactive, over HTTP and gRPC) within a second of the
// change, and the same key is accepted again within a second of its
// reactivation.
func TestAnInactiveKeyIsRefusedAndBackWithinASecond(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	ns := namespace(t, true)
	k := issue(t, ns, "switched", "hana@"+ns, never())
	authz := extAuthzClient(t)
	grpcSays := func(g Gomega) (codes.Code, string) {
		resp, err := authz.Check(ctx, checkRequest(map[string]string{"x-api-key": k.value}, ""))
		g.Expect(err).NotTo(HaveOccurred())
		return codes.Code(resp.GetStatus().GetCode()), resp.GetDeniedResponse().GetBody()
	}
	switchTo := func(state keymintv1alpha1.KeyState, wantCode int, wantReason string) time.Duration {
		t.Helper()
		patch := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"state":"`+string(state)+`"}}`))
		start := time.Now()
		g.Expect(env.Client.Patch(ctx, k.key.DeepCopy(), patch)).To(Succeed())
		g.Eventually(func(g Gomega) {
			code, reason, _ := ask(g, verifyURL+"/verify", "X-API-Key", k.value)
			g.Expect(code).To(Equal(wantCode))
			g.Expect(reason).To(Equal(wantReason))
		}).WithPolling(5 * time.Millisecond).Should(Succeed())
		return time.Since(start)
	}

	off := switchTo(keymintv1alpha1.StateInactive, http.StatusUnauthorized, "inactive")
	code, body := grpcSays(g)
	g.Expect(code).To(Equal(codes.Unauthenticated))
	g.Expect(body).To(Equal(`{"reason":"inactive"}`))
	g.Eventually(func(g Gomega) {
		g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(k.key), k.key)).To(Succeed())
		g.Expect(k.key.Status.Phase).To(Equal(keymintv1alpha1.PhaseInactive))
	}).Should(Succeed())
	on := switchTo(keymintv1alpha1.StateActive, http.StatusOK, "")
	code, _ = grpcSays(g)
	g.Expect(code).To(Equal(codes.OK))
	t.Logf("switched off → refused: %v; switched on → accepted: %v", off, on)
	g.Expect(off).To(BeNumerically("<=", time.Second))
	g.Expect(on).To(BeNumerically("<=", time.Second))
	g.Eventually(func() int { return len(trail.Of(audit.ActionRejectedUse, "switched")) }).Should(Equal(1))
}

// TestLastUsedIsWrittenOncePerInterval: status.lastUsedAt and the Used
// record, once per key per --last-used-interval, with the client's address
// and user agent.
func TestLastUsedIsWrittenOncePerInterval(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	ns := namespace(t, true)
	k := issue(t, ns, "used", "hank@"+ns, never())
	g.Expect(k.key.Status.LastUsedAt).To(BeNil())
	present := func() {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, verifyURL+"/verify", nil)
		g.Expect(err).NotTo(HaveOccurred())
		req.Header.Set("X-API-Key", k.value)
		req.Header.Set("X-Forwarded-For", "203.0.113.7, 10.0.0.1")
		req.Header.Set("User-Agent", "curl/8.5")
		resp, err := http.DefaultClient.Do(req)
		g.Expect(err).NotTo(HaveOccurred())
		_ = resp.Body.Close()
		g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
	}
	lastUsed := func(g Gomega) *metav1.Time {
		got := &keymintv1alpha1.APIKey{}
		g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(k.key), got)).To(Succeed())
		return got.Status.LastUsedAt
	}
	for range 5 {
		present()
	}
	g.Eventually(func() int { return len(trail.Of(audit.ActionUsed, "used")) }).Should(Equal(1))
	used := trail.Of(audit.ActionUsed, "used")[0]
	g.Expect(used.SourceIPs).To(Equal([]string{"203.0.113.7"}))
	g.Expect(used.UserAgent).To(Equal("curl/8.5"))
	g.Expect(used.KeyID).To(Equal(k.key.Status.KeyID))
	first := clk.Now().UTC().Truncate(time.Second)
	g.Eventually(func(g Gomega) {
		g.Expect(lastUsed(g)).NotTo(BeNil())
		g.Expect(lastUsed(g).Time).To(BeTemporally("==", first))
	}).Should(Succeed())

	// Within the interval: nothing more. After it: once more.
	clk.Step(30 * time.Minute)
	present()
	clk.Step(31 * time.Minute)
	present()
	g.Eventually(func() int { return len(trail.Of(audit.ActionUsed, "used")) }).Should(Equal(2))
	g.Eventually(func(g Gomega) {
		g.Expect(lastUsed(g).Time).To(BeTemporally("==", first.Add(61*time.Minute)))
	}).Should(Succeed())
	g.Expect(slices.ContainsFunc(trail.Of(audit.ActionUsed, "used"), func(r audit.Record) bool { return r.Message == "" })).To(BeFalse())
}

// TestNoKeyOrHashIsLogged: of all the keys the tests presented, valid or
// not, neither the key nor its hash is in the manager's logs, which log at
// the most verbose level.
func TestNoKeyOrHashIsLogged(t *testing.T) {
	testenv.RequireControlPlane(t)
	out := logs.String()
	if !strings.Contains(out, "serving key verification") {
		t.Fatal("the manager's logs were not captured")
	}
	n := 0
	presented.Range(func(k, _ any) bool {
		n++
		key := k.(string)
		if strings.Contains(out, key) || strings.Contains(out, strings.TrimPrefix(keys.Hash(key), keys.HashPrefix)) {
			t.Errorf("a presented key or its hash is in the logs")
		}
		return true
	})
	if n < 10 {
		t.Fatalf("only %d keys were presented", n)
	}
}
