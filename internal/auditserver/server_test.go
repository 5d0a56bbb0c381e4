package auditserver

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	. "github.com/onsi/gomega"

	"github.com/keymint/keymint/internal/audit"
	"github.com/keymint/keymint/internal/testenv"
)

// pki is a CA with a serving certificate for 127.0.0.1 and a client
// certificate, written to dir.
type pki struct {
	caFile, certFile, keyFile string
	client                    tls.Certificate
	// other is a client certificate of the same CA for another name.
	other tls.Certificate
	pool  *x509.CertPool
}

func newPKI(t *testing.T, dir string) pki {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTemplate := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, usage x509.ExtKeyUsage, ips []net.IP, name string) ([]byte, []byte) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, KeyUsage: x509.KeyUsageDigitalSignature, IPAddresses: ips,
		}, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, _ := x509.MarshalECPrivateKey(key)
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	}
	p := pki{caFile: filepath.Join(dir, "ca.crt"), certFile: filepath.Join(dir, "tls.crt"), keyFile: filepath.Join(dir, "tls.key"), pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	servingCert, servingKey := issue(2, x509.ExtKeyUsageServerAuth, []net.IP{net.ParseIP("127.0.0.1")}, "keymint-audit")
	clientCert, clientKey := issue(3, x509.ExtKeyUsageClientAuth, nil, "kube-apiserver")
	otherCert, otherKey := issue(4, x509.ExtKeyUsageClientAuth, nil, "system:serviceaccount:keymint-system:keymint")
	for path, data := range map[string][]byte{p.caFile: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), p.certFile: servingCert, p.keyFile: servingKey} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if p.client, err = tls.X509KeyPair(clientCert, clientKey); err != nil {
		t.Fatal(err)
	}
	if p.other, err = tls.X509KeyPair(otherCert, otherKey); err != nil {
		t.Fatal(err)
	}
	return p
}

// discardTrail takes records and keeps none.
type discardTrail struct{}

func (discardTrail) Write([]audit.Record) error { return nil }

func TestTheAPIServerAuthenticatesByClientCertificate(t *testing.T) {
	testenv.RequireControlPlane(t)
	dir := t.TempDir()
	p := newPKI(t, dir)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close() // frees the port for the server
	s := &Server{Addr: addr, CertFile: p.certFile, KeyFile: p.keyFile, ClientCAFile: p.caFile, ClientNames: []string{"kube-apiserver"},
		Trail: discardTrail{}, Resolver: fakeResolver{}, Logger: logr.Discard()}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	post := func(certs []tls.Certificate, body string) int {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.pool, Certificates: certs, MinVersion: tls.VersionTLS12}}}
		var code int
		// The server is starting: poll with a deadline.
		NewWithT(t).Eventually(func() error {
			resp, err := c.Post("https://"+addr+EventsPath, "application/json", bytes.NewReader([]byte(body)))
			if err != nil {
				return err
			}
			_ = resp.Body.Close()
			code = resp.StatusCode
			return nil
		}).WithTimeout(10 * time.Second).Should(Succeed())
		return code
	}
	const batch = `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[]}`
	if code := post([]tls.Certificate{p.client}, batch); code != http.StatusOK {
		t.Errorf("with the client certificate: %d, want 200", code)
	}
	if code := post(nil, batch); code != http.StatusUnauthorized {
		t.Errorf("without a certificate: %d, want 401", code)
	}
	if code := post([]tls.Certificate{p.other}, batch); code != http.StatusUnauthorized {
		t.Errorf("with a certificate of the same CA for another name: %d, want 401", code)
	}
	for _, body := range []string{
		`{"kind":"PodList","apiVersion":"v1","items":[]}`,
		`{"items":[{"verb":"get","stage":"ResponseComplete"}]}`,
		`{"kind":"EventList","apiVersion":"audit.k8s.io/v1beta1","items":[]}`,
	} {
		if code := post([]tls.Certificate{p.client}, body); code != http.StatusBadRequest {
			t.Errorf("a body that is no audit.k8s.io/v1 EventList (%s): %d, want 400", body, code)
		}
	}
}
