package auditapi

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"strconv"

	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/runtime"
	openapinamer "k8s.io/apiserver/pkg/endpoints/openapi"
	"k8s.io/apiserver/pkg/registry/rest"
	genericapiserver "k8s.io/apiserver/pkg/server"
	genericoptions "k8s.io/apiserver/pkg/server/options"
	basecompatibility "k8s.io/component-base/compatibility"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	auditv1alpha1 "github.com/keymint/keymint/api/audit/v1alpha1"
	"github.com/keymint/keymint/internal/audit"
	"github.com/keymint/keymint/internal/auditapi/openapi"
	"github.com/keymint/keymint/internal/deletions"
	"github.com/keymint/keymint/internal/keysecret"
)

// Options configure the aggregated API's server.
type Options struct {
	// BindAddress is host:port; "0" or "" turns the API off.
	BindAddress string
	// CertFile and KeyFile are the serving certificate, which must name
	// <service>.<namespace>.svc; the APIService's caBundle vouches for it.
	CertFile, KeyFile string
	// AuthenticationKubeconfig and AuthorizationKubeconfig reach the API
	// server that authenticates and authorizes callers (TokenReview,
	// SubjectAccessReview, and the front proxy's CA in
	// kube-system/extension-apiserver-authentication); in a Pod they are
	// empty and the Pod's own ServiceAccount is used.
	AuthenticationKubeconfig, AuthorizationKubeconfig string
	// CertSecret, when set, makes keymint keep the serving certificate
	// itself (SelfManagedCerts) in this Secret, for Service.
	CertSecret, Service string
}

// Enabled reports whether the API is served.
func (o *Options) Enabled() bool { return o.BindAddress != "" && o.BindAddress != "0" }

// Validate checks what the flags say.
func (o *Options) Validate() error {
	if !o.Enabled() {
		return nil
	}
	var errs []error
	if _, port, err := net.SplitHostPort(o.BindAddress); err != nil {
		errs = append(errs, fmt.Errorf("--api-bind-address %q is not host:port: %w", o.BindAddress, err))
	} else if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
		errs = append(errs, fmt.Errorf("--api-bind-address %q: the port must be a number from 1 to 65535", o.BindAddress))
	}
	if o.CertFile == "" || o.KeyFile == "" {
		errs = append(errs, errors.New("--api-bind-address needs --api-tls-cert-file and --api-tls-key-file: the APIService's caBundle must vouch for the certificate"))
	}
	return errors.Join(errs...)
}

// Deps are what the API serves from.
type Deps struct {
	// Reader reads APIKeys (the manager's cache); LiveReader the Secrets
	// (the API server: the cache keeps no key).
	Reader, LiveReader client.Reader
	Signer             *keysecret.Signer
	// Trail takes a reveal's record; Write returns once it is durable.
	// Nil: there is no durable trail, and a reveal is refused (503).
	Trail audit.Writer
	// Echo takes the records too once Trail has them (stdout's lines), or
	// in its place for a refusal; its failure loses nothing durable.
	Echo audit.Writer
	// Records is the trail auditrecords reads; nil serves none (503).
	Records Source
	Clock   clock.PassiveClock
	// Deletions, when set, serves the deletion webhook's reviews at
	// deletions.Path, with the API's certificate: the API server calls
	// admission webhooks without credentials, so the path is open to
	// anyone, and the handler believes only what the API server vouches
	// for.
	Deletions http.Handler
}

// Server is the aggregated API; it runs on every replica (no leader
// election).
type Server struct {
	api     *genericapiserver.GenericAPIServer
	reveals *revealREST
}

// NeedLeaderElection: every replica serves the API.
func (s *Server) NeedLeaderElection() bool { return false }

// Start serves until ctx ends.
func (s *Server) Start(ctx context.Context) error {
	if r := s.reveals; r.trail != nil {
		// The summaries of the refusals' windows, as they close.
		go r.refusals.Flush(ctx, clock.RealClock{}, r.refusalTrail(), ctrllog.FromContext(ctx).WithName("aggregated-api"))
	}
	return s.api.PrepareRun().RunWithContext(ctx)
}

// New builds the server: TLS from the certificate files, authentication
// and authorization delegated to the API server, and the two resources.
func New(o *Options, d Deps) (*Server, error) {
	host, port, err := net.SplitHostPort(o.BindAddress)
	if err != nil {
		return nil, err
	}
	serving := genericoptions.NewSecureServingOptions().WithLoopback()
	serving.BindAddress = net.ParseIP(host)
	if serving.BindAddress == nil {
		serving.BindAddress = net.IPv4zero
	}
	serving.BindPort, _ = strconv.Atoi(port)
	serving.ServerCert.CertKey = genericoptions.CertKey{CertFile: o.CertFile, KeyFile: o.KeyFile}
	authn := genericoptions.NewDelegatingAuthenticationOptions()
	authn.RemoteKubeConfigFile = o.AuthenticationKubeconfig
	authz := genericoptions.NewDelegatingAuthorizationOptions()
	authz.RemoteKubeConfigFile = o.AuthorizationKubeconfig
	if d.Deletions != nil {
		authz.AlwaysAllowPaths = append(authz.AlwaysAllowPaths, deletions.Path)
	}

	cfg := genericapiserver.NewRecommendedConfig(Codecs)
	// A reveal's answer holds a key: no cache may keep an answer of this
	// API (the default, no-cache, only asks a cache to check again).
	cfg.BuildHandlerChainFunc = func(h http.Handler, c *genericapiserver.Config) http.Handler {
		return genericapiserver.DefaultBuildHandlerChain(noStore(h), c)
	}
	cfg.EffectiveVersion = basecompatibility.NewEffectiveVersionFromString("", "", "")
	// The schemas (generated by openapi-gen) serve kubectl's validation and
	// explain, and server-side apply's field management needs them.
	namer := openapinamer.NewDefinitionNamer(Scheme)
	cfg.OpenAPIV3Config = genericapiserver.DefaultOpenAPIV3Config(openapi.GetOpenAPIDefinitions, namer)
	cfg.OpenAPIV3Config.Info.Title = "keymint"
	cfg.OpenAPIConfig = genericapiserver.DefaultOpenAPIConfig(openapi.GetOpenAPIDefinitions, namer)
	cfg.OpenAPIConfig.Info.Title = "keymint"
	if err := serving.ApplyTo(&cfg.SecureServing, &cfg.LoopbackClientConfig); err != nil {
		return nil, fmt.Errorf("serving the aggregated API: %w", err)
	}
	if err := authn.ApplyTo(&cfg.Authentication, cfg.SecureServing, cfg.OpenAPIConfig); err != nil {
		return nil, fmt.Errorf("delegated authentication: %w", err)
	}
	if err := authz.ApplyTo(&cfg.Authorization); err != nil {
		return nil, fmt.Errorf("delegated authorization: %w", err)
	}
	api, err := cfg.Complete().New("keymint-api", genericapiserver.NewEmptyDelegate())
	if err != nil {
		return nil, err
	}
	reveals := &revealREST{reader: d.Reader, live: d.LiveReader, signer: d.Signer, trail: d.Trail, echo: d.Echo, clock: d.Clock,
		refusals: audit.NewAggregator(audit.RepeatWindow), views: newActorLimits()}
	group := genericapiserver.NewDefaultAPIGroupInfo(auditv1alpha1.GroupName, Scheme, runtime.NewParameterCodec(Scheme), Codecs)
	group.VersionedResourcesStorageMap[auditv1alpha1.GroupVersion.Version] = map[string]rest.Storage{
		auditv1alpha1.ResourceAPIKeyReveals: reveals,
		auditv1alpha1.ResourceAuditRecords:  newRecordsREST(d.Records),
	}
	if err := api.InstallAPIGroup(&group); err != nil {
		return nil, err
	}
	if d.Deletions != nil {
		api.Handler.NonGoRestfulMux.Handle(deletions.Path, d.Deletions)
	}
	return &Server{api: api, reveals: reveals}, nil
}

// noStore marks every answer of h as one no cache may keep.
func noStore(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

// AddFlags defines the API's flags on fs.
func (o *Options) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.BindAddress, "api-bind-address", o.BindAddress, "host:port of keymint's aggregated API (audit.keymint.io: apikeyreveals, auditrecords), which kube-apiserver reaches through the APIService. 0 disables it.")
	fs.StringVar(&o.CertFile, "api-tls-cert-file", o.CertFile, "The aggregated API's serving certificate, for <service>.<namespace>.svc (reloaded when it changes).")
	fs.StringVar(&o.KeyFile, "api-tls-key-file", o.KeyFile, "The aggregated API's serving key.")
	fs.StringVar(&o.CertSecret, "api-cert-secret", o.CertSecret, "Keep the aggregated API's serving certificate in this Secret of the manager's namespace: keymint makes a CA and a certificate for --api-service-name, renews them, writes them to --api-tls-cert-file and --api-tls-key-file (tls.crt and tls.key of one directory) and puts the CA into the APIService's caBundle. Empty: the files come from elsewhere (cert-manager).")
	fs.StringVar(&o.Service, "api-service-name", o.Service, "The Service in front of the aggregated API, which its certificate names (<name>.<namespace>.svc).")
	fs.StringVar(&o.AuthenticationKubeconfig, "authentication-kubeconfig", o.AuthenticationKubeconfig, "kubeconfig of the API server that authenticates the aggregated API's callers; empty in a Pod (its ServiceAccount).")
	fs.StringVar(&o.AuthorizationKubeconfig, "authorization-kubeconfig", o.AuthorizationKubeconfig, "kubeconfig of the API server that authorizes the aggregated API's callers; empty in a Pod (its ServiceAccount).")
}

// RequiredPermissions are what delegated authentication and authorization
// need (the auth-delegator ClusterRole, and reading the front proxy's CA
// as extension-apiserver-authentication-reader allows).
func RequiredPermissions() []authorizationv1.ResourceAttributes {
	return []authorizationv1.ResourceAttributes{
		{Group: "authentication.k8s.io", Resource: "tokenreviews", Verb: "create"},
		{Group: "authorization.k8s.io", Resource: "subjectaccessreviews", Verb: "create"},
		{Namespace: "kube-system", Resource: "configmaps", Name: "extension-apiserver-authentication", Verb: "get"},
	}
}
