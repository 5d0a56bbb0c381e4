package controllers_test

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/expiry"
	"github.com/keymint/keymint/internal/testenv"
)

// TestExpiryLimitPerNamespace: the keymint-expiry-limit policy refuses, in a
// namespace whose keymint-policy ConfigMap says so, a key that would live
// longer than maxMonths (by months or by an at date) or never expire,
// naming the limit; another namespace has no limit.
func TestExpiryLimitPerNamespace(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	limited, free := newRestrictedNamespace(t), newRestrictedNamespace(t)
	g.Expect(k8sClient.Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: limited, Name: "keymint-policy"},
		Data:       map[string]string{"maxMonths": "12", "allowNever": "false"},
	})).To(Succeed())
	// Server-side dry runs: admission runs, nothing is stored.
	create := func(ns, name string, exp keymintv1alpha1.Expiration) error {
		return k8sClient.Create(ctx, newKey(ns, name, "someone", exp), client.DryRunAll)
	}
	refused := func(err error, message string) {
		t.Helper()
		g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "%v", err)
		g.Expect(err.Error()).To(ContainSubstring(message))
	}
	// The policy's params load a moment after the ConfigMap.
	g.Eventually(func() bool { return apierrors.IsForbidden(create(limited, "too-long", months(24))) }).Should(BeTrue())
	refused(create(limited, "too-long", months(24)), "spec.expiration.months: at most 12 months in namespace "+limited)
	refused(create(limited, "forever", never()), "spec.expiration.never: keys that never expire are not allowed in namespace "+limited)
	now := time.Now().UTC()
	refused(create(limited, "late", at(expiry.AddMonths(now, 12).Add(time.Hour))), "spec.expiration.at: at most 12 months after creation in namespace "+limited)
	g.Expect(create(limited, "a-year", months(12))).To(Succeed())
	g.Expect(create(limited, "in-time", at(expiry.AddMonths(now, 11)))).To(Succeed())
	g.Expect(create(free, "long", months(24))).To(Succeed(), "a namespace without keymint-policy has no limit")
	g.Expect(create(free, "forever", never())).To(Succeed())
}
