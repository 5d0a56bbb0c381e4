package verify_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/testenv"
)

// backend is the service behind the gateway: it records what reaches it.
type backend struct {
	mu    sync.Mutex
	users []string
}

func (b *backend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.users = append(b.users, r.Header.Get("X-Keymint-User"))
	if r.Header.Get("Authorization") != "" || r.Header.Get("X-API-Key") != "" {
		b.users = append(b.users, "THE KEY REACHED THE BACKEND")
	}
	_, _ = w.Write([]byte("hello"))
}

func (b *backend) seen() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.users...)
}

// nginxConf puts nginx on port in front of upstream, asking the verifier
// with auth_request for every request, scoped to namespace ns, and passing
// the key's user, never the key, upstream. Its access log has each
// request's status and the ID of the key presented.
const nginxConf = `
daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 64; }
http {
	log_format keymint '$status $keymint_key_id';
	access_log %[1]s/access.log keymint;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	server {
		listen 127.0.0.1:%[2]d;
		location / {
			auth_request /_keymint;
			auth_request_set $keymint_user $upstream_http_x_keymint_user;
			auth_request_set $keymint_key_id $upstream_http_x_keymint_key_id;
			proxy_set_header X-Keymint-User $keymint_user;
			proxy_set_header Authorization "";
			proxy_set_header X-API-Key "";
			proxy_pass %[3]s;
		}
		location = /_keymint {
			internal;
			proxy_pass %[4]s/verify/ns/%[5]s;
			proxy_pass_request_body off;
			proxy_set_header Content-Length "";
			proxy_set_header X-Forwarded-For $remote_addr;
		}
	}
}
`

// startNginx runs Debian's nginx with nginxConf until the test ends; it
// returns its URL and the path of its access log.
func startNginx(t *testing.T, upstream, ns string) (string, string) {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nginx"); serr != nil {
			t.Fatal("nginx is missing: run make test, which installs Debian's nginx package (make nginx), or apt-get install nginx")
		}
		bin = "/usr/sbin/nginx"
	}
	dir := t.TempDir()
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, nginxConf, dir, port, upstream, verifyURL, ns), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-c", conf, "-e", filepath.Join(dir, "error.log"))
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			raw, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("nginx: %s\n%s", out, raw)
		}
	})
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	NewWithT(t).Eventually(func() error {
		resp, err := http.Get(url + "/")
		if err == nil {
			_ = resp.Body.Close()
		}
		return err
	}).WithTimeout(10*time.Second).Should(Succeed(), "nginx did not start")
	return url, filepath.Join(dir, "access.log")
}

// TestNginxGateway: real nginx with auth_request to /verify/ns/<ns> in
// front of a backend. A valid key passes and the backend learns its user;
// every other key gets 401 and never reaches the backend.
func TestNginxGateway(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	s := newKeyStates(t)
	be := &backend{}
	upstream := httptest.NewServer(be)
	defer upstream.Close()
	gateway, _ := startNginx(t, upstream.URL, s.ns)

	get := func(header, key string, forged bool) int {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, gateway+"/api/orders", nil)
		g.Expect(err).NotTo(HaveOccurred())
		if key != "" {
			if header == "Authorization" {
				key = "Bearer " + key
			}
			req.Header.Set(header, key)
		}
		if forged {
			req.Header.Set("X-Keymint-User", "mallory")
		}
		resp, err := http.DefaultClient.Do(req)
		g.Expect(err).NotTo(HaveOccurred())
		_ = resp.Body.Close()
		return resp.StatusCode
	}

	g.Expect(get("Authorization", s.valid.value, true)).To(Equal(http.StatusOK))
	g.Expect(get("X-API-Key", s.valid.value, false)).To(Equal(http.StatusOK))
	g.Expect(be.seen()).To(Equal([]string{s.validUser, s.validUser}), "the backend learns the key's user, never a forged one, never the key")

	clk.SetTime(s.expired.key.Status.ExpiresAt.Time)
	for name, key := range map[string]string{
		"missing":           "",
		"malformed":         "kmk_nonsense",
		"unknown (deleted)": s.deleted.value,
		"expired":           s.expired.value,
		"suspended":         s.suspended.value,
		"other namespace":   s.elsewhere.value,
	} {
		g.Expect(get("Authorization", key, false)).To(Equal(http.StatusUnauthorized), name)
	}
	g.Expect(be.seen()).To(HaveLen(2), "no refused request reached the backend")
}

// TestAWorkloadThroughARenewal is a workload's view of a renewal: real
// nginx in front of the verifier, and a client that presents the key in a
// file which a stand-in for the kubelet rewrites from the Secret each time
// the Secret changes (what a mounted volume gives). Through one renewal no
// request is refused, and the gateway's log shows the key ID switch.
func TestAWorkloadThroughARenewal(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	ns := namespace(t, true)
	key := &keymintv1alpha1.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "workload"},
		Spec: keymintv1alpha1.APIKeySpec{User: "wendy@" + ns, Expiration: keymintv1alpha1.Expiration{Months: new(int32(3))},
			Rotation: &keymintv1alpha1.Rotation{}}}
	g.Expect(env.Client.Create(ctx, key)).To(Succeed())
	first := waitFor(g, key, func(k *keymintv1alpha1.APIKey) bool { return k.Status.Phase == keymintv1alpha1.PhaseActive })
	upstream := httptest.NewServer(&backend{})
	defer upstream.Close()
	gateway, accessLog := startNginx(t, upstream.URL, ns)

	// The volume: the file follows the Secret, as the kubelet's refresh
	// does, which is never at once: the kubelet reads Secrets through its
	// own watch and refreshes a volume on its sync period (a minute by
	// default). The file takes a new key 2 s after the API server showed
	// it, far under that; at once, it could beat the verifier's own watch
	// under load, which no kubelet does.
	const kubeletLag = 2 * time.Second
	file := filepath.Join(t.TempDir(), "api-key")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		written, pending := "", ""
		var since time.Time
		for {
			s := &corev1.Secret{}
			if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "workload"}, s); err == nil {
				v := string(s.Data[keymintv1alpha1.DataKey])
				if v != pending {
					pending, since = v, time.Now()
				}
				if v != written && (written == "" || time.Since(since) >= kubeletLag) {
					presented.Store(v, true)
					tmp := file + ".tmp"
					if os.WriteFile(tmp, []byte(v), 0o600) == nil && os.Rename(tmp, file) == nil {
						written = v
					}
				}
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
	// The workload: re-reads the file for every request.
	var mu sync.Mutex
	codes := map[int]int{}
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			raw, err := os.ReadFile(file)
			if err != nil {
				continue
			}
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, gateway+"/api/orders", nil)
			req.Header.Set("X-API-Key", string(raw))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				continue
			}
			_ = resp.Body.Close()
			mu.Lock()
			codes[resp.StatusCode]++
			mu.Unlock()
		}
	})
	sent := func() int { mu.Lock(); defer mu.Unlock(); return codes[http.StatusOK] + codes[http.StatusUnauthorized] }
	g.Eventually(sent).Should(BeNumerically(">=", 50))

	clk.SetTime(first.Status.RenewalTime.Time)
	poke(g, key)
	renewed := waitFor(g, key, func(k *keymintv1alpha1.APIKey) bool { return k.Status.Revision == 2 })
	g.Eventually(func() string { raw, _ := os.ReadFile(accessLog); return string(raw) }).
		Should(ContainSubstring("200 "+renewed.Status.KeyID), "the workload never presented the renewed key")
	at := sent()
	g.Eventually(sent).Should(BeNumerically(">=", at+50))
	close(stop)
	wg.Wait()

	t.Logf("through one renewal: %v (status: requests)", codes)
	g.Expect(codes[http.StatusOK]).To(BeNumerically(">", 100))
	g.Expect(codes).To(HaveLen(1), "a request was refused through the renewal: %v", codes)
	raw, err := os.ReadFile(accessLog)
	g.Expect(err).NotTo(HaveOccurred())
	log := string(raw)
	g.Expect(strings.Index(log, "200 "+first.Status.KeyID)).To(BeNumerically("<", strings.Index(log, "200 "+renewed.Status.KeyID)),
		"the gateway log shows the key ID switch")
}
