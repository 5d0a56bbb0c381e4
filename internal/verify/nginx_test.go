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
// the key's user, never the key, upstream.
const nginxConf = `
daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 64; }
http {
	access_log off;
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

// startNginx runs Debian's nginx with nginxConf until the test ends.
func startNginx(t *testing.T, upstream, ns string) string {
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
	return url
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
	gateway := startNginx(t, upstream.URL, s.ns)

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
