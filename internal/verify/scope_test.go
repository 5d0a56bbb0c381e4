package verify

import (
	"context"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"k8s.io/utils/clock"
)

// TestExtAuthzCanRequireAScope: with RequireScope, a route that forgot the
// keymint-namespace extension is refused before any key is looked at.
func TestExtAuthzCanRequireAScope(t *testing.T) {
	// A Verifier with nothing to look keys up in: a lookup would panic.
	a := &ExtAuthz{RequireScope: true, Verifier: &Verifier{Clock: clock.RealClock{}}}
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Headers: map[string]string{"authorization": "Bearer kmk_whatever"}, Path: "/api"}},
	}}
	resp, err := a.Check(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if got := codes.Code(resp.GetStatus().GetCode()); got != codes.PermissionDenied {
		t.Errorf("code = %s, want PermissionDenied", got)
	}
	if got := resp.GetDeniedResponse().GetBody(); got != `{"reason":"no_scope"}` {
		t.Errorf("body = %s", got)
	}
	if got := resp.GetDeniedResponse().GetStatus().GetCode().String(); got != "Forbidden" {
		t.Errorf("HTTP status = %s, want Forbidden", got)
	}
}
