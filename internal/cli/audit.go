package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keymint/keymint/internal/audit"
)

// AuditServerEnv names the environment variable --audit-server defaults to.
const AuditServerEnv = "KEYMINT_AUDIT_SERVER"

func newAuditCommand(o *Options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "The audit trail of API keys (administrators)",
	}
	cmd.AddCommand(newAuditExportCommand(o))
	return cmd
}

type auditExport struct {
	o                  *Options
	server, ca         string
	since              time.Duration
	from, to           string
	user, action, key  string
	allNamespaces      bool
	format             string
	insecureSkipVerify bool
}

func newAuditExportCommand(o *Options) *cobra.Command {
	e := &auditExport{o: o}
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Export audit records as JSON lines or CSV",
		Long: `export prints the audit records of API keys: who issued, viewed, mounted,
was refused, expired or deleted which key, and when. It reads them from the
keymint manager's audit endpoint, which allows callers whose bearer token
(--token) may get apikeys/audit in group keymint.io: cluster-wide for
--all-namespaces, else in the namespace exported (ClusterRole keymint-admin).
--key narrows the export to one APIKey.`,
		Example: `  kubectl apikey audit export -A --since 24h --action Viewed \
    --token "$(kubectl create token auditor -n keymint-system)" \
    --audit-server https://keymint-audit.keymint-system:9443 --audit-certificate-authority ca.crt
  kubectl apikey audit export -n team-a --key ci --format csv > ci-audit.csv`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return e.run(cmd.Context()) },
	}
	f := cmd.Flags()
	f.StringVar(&e.server, "audit-server", os.Getenv(AuditServerEnv), "the manager's audit endpoint, https://HOST:PORT (default $"+AuditServerEnv+")")
	f.StringVar(&e.ca, "audit-certificate-authority", "", "CA file of the audit endpoint's certificate (default: the system's)")
	f.BoolVar(&e.insecureSkipVerify, "audit-insecure-skip-tls-verify", false, "do not verify the audit endpoint's certificate (insecure)")
	f.DurationVar(&e.since, "since", 0, "only records of this last duration, e.g. 24h")
	f.StringVar(&e.from, "from", "", "only records at or after this time (RFC 3339)")
	f.StringVar(&e.to, "to", "", "only records before this time (RFC 3339)")
	f.StringVar(&e.user, "user", "", "only records of this user's keys")
	f.StringVar(&e.key, "key", "", "only records of this APIKey (in the namespace of -n)")
	f.StringVar(&e.action, "action", "", "only this action: "+audit.ActionNames())
	_ = cmd.RegisterFlagCompletionFunc("action", completeActions)
	f.BoolVarP(&e.allNamespaces, "all-namespaces", "A", false, "records of every namespace")
	f.StringVar(&e.format, "format", "json", "json (JSON lines) or csv")
	return cmd
}

func (e *auditExport) run(ctx context.Context) error {
	if e.server == "" {
		return usageErrorf("--audit-server (or $%s) is required: the manager's audit endpoint, https://HOST:PORT", AuditServerEnv)
	}
	if u, err := url.Parse(e.server); err != nil || u.Scheme != "https" || u.Host == "" {
		return usageErrorf("--audit-server must be an https:// URL, not %q: the bearer token is never sent in the clear", e.server)
	}
	if e.since != 0 && e.from != "" {
		return usageErrorf("--since and --from both set the start; pass one")
	}
	if e.action != "" {
		if err := audit.ValidAction(audit.Action(e.action)); err != nil {
			return usageErrorf("--action: %v", err)
		}
	}
	if e.format != "json" && e.format != "csv" {
		return usageErrorf("--format must be json or csv, not %q", e.format)
	}
	if e.key != "" && e.allNamespaces {
		return usageErrorf("--key names an APIKey of one namespace; drop --all-namespaces")
	}
	query := url.Values{"format": {e.format}}
	for param, v := range map[string]string{"to": e.to, "user": e.user, "action": e.action, "name": e.key} {
		if v != "" {
			query.Set(param, v)
		}
	}
	switch {
	case e.from != "":
		query.Set("from", e.from)
	case e.since != 0:
		query.Set("from", e.o.Clock.Now().Add(-e.since).UTC().Format(time.RFC3339))
	}
	if !e.allNamespaces {
		ns, err := e.o.Namespace()
		if err != nil {
			return err
		}
		query.Set("namespace", ns)
	}
	token, err := e.token()
	if err != nil {
		return err
	}
	httpClient, err := e.httpClient()
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(e.server, "/")+audit.ExportPath+"?"+query.Encode(), nil)
	if err != nil {
		return usageErrorf("--audit-server: %v", err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("User-Agent", userAgent())
	resp, err := httpClient.Do(req)
	if err != nil {
		if _, ok := errors.AsType[*tls.CertificateVerificationError](err); ok {
			return fmt.Errorf("the audit endpoint's certificate is not trusted: pass --audit-certificate-authority with the CA that signed it (%v)", err)
		}
		return fmt.Errorf("reaching the audit endpoint: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("the audit endpoint refused the export (%s): %s", resp.Status, strings.TrimSpace(string(body)))
	}
	if _, err := io.Copy(e.o.Streams.Out, resp.Body); err != nil {
		return err
	}
	if msg := resp.Trailer.Get(audit.ExportErrorTrailer); msg != "" {
		return fmt.Errorf("the export is incomplete: %s", msg)
	}
	return nil
}

// token is the bearer token of the kubeconfig or --token: the endpoint
// authenticates callers with a TokenReview, which a client certificate
// cannot pass.
func (e *auditExport) token() (string, error) {
	cfg, err := e.o.ConfigFlags.ToRESTConfig()
	if err != nil {
		return "", fmt.Errorf("reading the kubeconfig (--kubeconfig, $KUBECONFIG, ~/.kube/config): %w", err)
	}
	if cfg.BearerToken != "" {
		return cfg.BearerToken, nil
	}
	if cfg.BearerTokenFile != "" {
		raw, err := os.ReadFile(cfg.BearerTokenFile)
		if err != nil {
			return "", err
		}
		return strings.TrimSpace(string(raw)), nil
	}
	return "", usageErrorf("the audit export authenticates with a bearer token, and this kubeconfig has none: pass --token, e.g. --token \"$(kubectl create token auditor -n keymint-system)\"")
}

func (e *auditExport) httpClient() (*http.Client, error) {
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: e.insecureSkipVerify} //nolint:gosec // only on explicit request
	if e.ca != "" {
		raw, err := os.ReadFile(e.ca)
		if err != nil {
			return nil, usageErrorf("--audit-certificate-authority: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(raw) {
			return nil, usageErrorf("--audit-certificate-authority: no PEM certificate in %s", e.ca)
		}
		tlsConfig.RootCAs = pool
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfig, Proxy: http.ProxyFromEnvironment}, Timeout: 5 * time.Minute}, nil
}
