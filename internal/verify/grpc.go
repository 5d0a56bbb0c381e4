package verify

import (
	"context"
	"net"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/go-logr/logr"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/keymint/keymint/internal/metrics"
)

// ContextExtensionNamespace is the route's context extension that scopes
// Envoy's checks: a comma-separated list of the namespaces whose keys the
// route accepts. Envoy sets it from the route's configuration, never from
// the request.
const ContextExtensionNamespace = "keymint-namespace"

// ExtAuthz serves Envoy's envoy.service.auth.v3.Authorization/Check with
// the decision the HTTP verifier makes.
type ExtAuthz struct {
	authv3.UnimplementedAuthorizationServer
	Verifier *Verifier
	// RequireScope refuses a check whose route names no namespaces (no
	// keymint-namespace context extension), instead of accepting keys of
	// every namespace: a route that forgot the extension fails closed.
	RequireScope bool
}

// Check answers one of Envoy's checks. An allowed request goes upstream
// with the key's identity headers and without the key; a refused one gets
// 401 with the same JSON body as over HTTP.
func (a *ExtAuthz) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	v := a.Verifier
	start := v.Clock.Now()
	defer func() { metrics.VerifyDuration.WithLabelValues("grpc").Observe(v.Clock.Since(start).Seconds()) }()
	attrs := req.GetAttributes()
	headers := attrs.GetRequest().GetHttp().GetHeaders() // Envoy sends the names in lower case
	caller := Caller{Address: firstHop(headers["x-forwarded-for"]), UserAgent: headers["user-agent"]}
	if caller.Address == "" {
		caller.Address = attrs.GetSource().GetAddress().GetSocketAddress().GetAddress()
	}
	var scope []string
	list, scoped := attrs.GetContextExtensions()[ContextExtensionNamespace]
	if !scoped && a.RequireScope {
		return &authv3.CheckResponse{
			Status: &rpcstatus.Status{Code: int32(codes.PermissionDenied), Message: string(ReasonNoScope)},
			HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
				Status:  &typev3.HttpStatus{Code: typev3.StatusCode_Forbidden},
				Headers: []*corev3.HeaderValueOption{header("Content-Type", "application/json")},
				Body:    string(refusal(ReasonNoScope)),
			}},
		}, nil
	}
	if scoped {
		scope = []string{}
		for ns := range strings.SplitSeq(list, ",") {
			if ns = strings.TrimSpace(ns); ns != "" {
				scope = append(scope, ns)
			}
		}
	}
	verdict := v.Verify(ctx, presentedKey(headers["authorization"], headers[strings.ToLower(HeaderAPIKey)]), scope, caller)
	if verdict.Valid() {
		var set []*corev3.HeaderValueOption
		identity(verdict, func(name, value string) { set = append(set, header(name, value)) })
		return &authv3.CheckResponse{
			Status: &rpcstatus.Status{Code: int32(codes.OK)},
			HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
				Headers:         set,
				HeadersToRemove: []string{"authorization", strings.ToLower(HeaderAPIKey)},
			}},
		}, nil
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(codes.Unauthenticated), Message: string(verdict.Reason)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode_Unauthorized},
			Headers: []*corev3.HeaderValueOption{header("WWW-Authenticate", challengeFor(verdict.Reason)), header("Content-Type", "application/json")},
			Body:    string(refusal(verdict.Reason)),
		}},
	}, nil
}

// header sets a header, replacing any the client sent: a client must not
// pass its own X-Keymint-User upstream.
func header(name, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: name, Value: value},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

// GRPCServer serves ExtAuthz on every replica, as a manager Runnable.
type GRPCServer struct {
	Addr     string
	Verifier *Verifier
	Log      logr.Logger
	// RequireScope: see ExtAuthz.
	RequireScope bool
}

// NeedLeaderElection is false: every replica verifies.
func (s *GRPCServer) NeedLeaderElection() bool { return false }

// Start serves until ctx ends.
func (s *GRPCServer) Start(ctx context.Context) error {
	if err := s.Verifier.waitForSync(ctx); err != nil {
		return nil
	}
	ln, err := net.Listen("tcp", s.Addr)
	if err != nil {
		return err
	}
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(1 << 20))
	authv3.RegisterAuthorizationServer(srv, &ExtAuthz{Verifier: s.Verifier, RequireScope: s.RequireScope})
	s.Log.Info("serving Envoy ext_authz", "address", ln.Addr().String())
	go func() {
		<-ctx.Done()
		srv.GracefulStop()
	}()
	return srv.Serve(ln)
}
