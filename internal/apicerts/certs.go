// Package apicerts keeps the serving certificate of keymint's aggregated
// API: cert-controller's rotator makes a CA and a certificate, renews them,
// writes them to disk and injects the CA into the APIService.
package apicerts

import (
	"fmt"
	"path/filepath"

	"github.com/open-policy-agent/cert-controller/pkg/rotator"
	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	auditv1alpha1 "github.com/keymint/keymint/api/audit/v1alpha1"
)

// APIServiceName is the APIService that registers the API; its caBundle
// is the self-managed CA's when keymint keeps its own certificate.
var APIServiceName = auditv1alpha1.GroupVersion.Version + "." + auditv1alpha1.GroupName

// DeletionsWebhookName is the ValidatingWebhookConfiguration whose
// webhooks the API's server answers (internal/deletions), with the same
// certificate.
const DeletionsWebhookName = "keymint-deletions"

// SelfManagedCerts keeps the API's serving certificate, for
// <Service>.<Namespace>.svc, in Secret Namespace/Secret, renews it before
// it expires, writes it where --api-tls-cert-file and --api-tls-key-file
// point (tls.crt and tls.key of one directory), and puts its CA into the
// APIService's caBundle: cert-controller's rotator, as Gatekeeper runs it.
// Every replica runs it; they agree through the Secret.
type SelfManagedCerts struct {
	Namespace, Secret, Service string
}

// Add adds the rotator to mgr; ready closes once the files are in place.
func (c SelfManagedCerts) Add(mgr manager.Manager, certFile, keyFile string, ready chan struct{}) error {
	dir := filepath.Dir(certFile)
	if filepath.Base(certFile) != "tls.crt" || filepath.Dir(keyFile) != dir || filepath.Base(keyFile) != "tls.key" {
		return fmt.Errorf("--api-cert-secret writes tls.crt and tls.key into one directory: point --api-tls-cert-file and --api-tls-key-file at them, not %s and %s", certFile, keyFile)
	}
	return rotator.AddRotator(mgr, &rotator.CertRotator{
		SecretKey:      types.NamespacedName{Namespace: c.Namespace, Name: c.Secret},
		CertDir:        dir,
		CAName:         "keymint-api-ca",
		CAOrganization: "keymint",
		DNSName:        c.Service + "." + c.Namespace + ".svc",
		IsReady:        ready,
		Webhooks: []rotator.WebhookInfo{
			{Name: APIServiceName, Type: rotator.APIService},
			{Name: DeletionsWebhookName, Type: rotator.Validating},
		},
		ControllerName: "keymint-api-certs",
	})
}

// +kubebuilder:rbac:groups=apiregistration.k8s.io,resources=apiservices,verbs=get;list;watch;update
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=validatingwebhookconfigurations,verbs=get;list;watch;update

// CertPermissions are what the rotator needs besides the manager's own:
// updating the caBundle of the APIService and of the deletion webhook (it
// reads and writes its Secret with the manager's rights on Secrets).
func CertPermissions() []authorizationv1.ResourceAttributes {
	var out []authorizationv1.ResourceAttributes
	for _, verb := range []string{"get", "list", "watch", "update"} {
		out = append(out,
			authorizationv1.ResourceAttributes{Group: "apiregistration.k8s.io", Resource: "apiservices", Verb: verb},
			authorizationv1.ResourceAttributes{Group: "admissionregistration.k8s.io", Resource: "validatingwebhookconfigurations", Verb: verb})
	}
	return out
}
