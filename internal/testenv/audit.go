package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	certutil "k8s.io/client-go/util/cert"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// AuditWebhook is where the API server sends its audit batches: a manager
// that serves the audit endpoint on Addr with this certificate and token
// receives them.
type AuditWebhook struct {
	Addr                         string
	CertFile, KeyFile, TokenFile string
}

// ConfigureAudit makes env's API server audit with configDir's audit
// policy (config/audit/policy.yaml) and send its batches every second to a
// webhook on a free local port, authenticated by a bearer token. The files
// go to dir.
func ConfigureAudit(env *envtest.Environment, configDir, dir string) (*AuditWebhook, error) {
	configDir, err := filepath.Abs(configDir)
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	w := &AuditWebhook{
		Addr:      net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		CertFile:  filepath.Join(dir, "audit-tls.crt"),
		KeyFile:   filepath.Join(dir, "audit-tls.key"),
		TokenFile: filepath.Join(dir, "audit-token"),
	}
	certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKey("127.0.0.1", []net.IP{net.ParseIP("127.0.0.1")}, nil)
	if err != nil {
		return nil, err
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	token := hex.EncodeToString(secret)
	for path, data := range map[string][]byte{w.CertFile: certPEM, w.KeyFile: keyPEM, w.TokenFile: []byte(token)} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return nil, err
		}
	}
	kubeconfig := filepath.Join(dir, "audit-webhook.kubeconfig")
	err = clientcmd.WriteToFile(clientcmdapi.Config{
		Clusters:       map[string]*clientcmdapi.Cluster{"keymint-audit": {Server: "https://" + w.Addr + "/audit/events", CertificateAuthorityData: certPEM}},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{"kube-apiserver": {Token: token}},
		Contexts:       map[string]*clientcmdapi.Context{"keymint-audit": {Cluster: "keymint-audit", AuthInfo: "kube-apiserver"}},
		CurrentContext: "keymint-audit",
	}, kubeconfig)
	if err != nil {
		return nil, err
	}
	env.ControlPlane.GetAPIServer().Configure().
		Set("audit-policy-file", filepath.Join(configDir, "audit", "policy.yaml")).
		Set("audit-webhook-config-file", kubeconfig).
		Set("audit-webhook-batch-max-wait", "1s").
		Set("audit-webhook-initial-backoff", "1s")
	return w, nil
}

func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}
