//go:build e2e

package e2e

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keymint/keymint/internal/app"
)

// managerPods are the chart's manager Pods.
var managerPods = map[string]string{"app.kubernetes.io/name": "keymint", "app.kubernetes.io/component": "manager"}

func leader(t *testing.T) string {
	t.Helper()
	lease := &coordinationv1.Lease{}
	if err := admin.Get(context.Background(), client.ObjectKey{Namespace: systemNamespace, Name: app.LeaderElectionID}, lease); err != nil {
		t.Fatal(err)
	}
	if lease.Spec.HolderIdentity == nil {
		return ""
	}
	return *lease.Spec.HolderIdentity
}

// TestTwoReplicasAndTheKilledLeader: the chart runs two managers, both
// Ready (the kubelet's readiness probe on /readyz passes on the one that
// does not lead too). The leader's container is SIGKILLed (it cannot hand
// its lease on) and its Pod removed; a key created then is issued by
// another manager within the lease time.
func TestTwoReplicasAndTheKilledLeader(t *testing.T) {
	g := NewWithT(t)
	pods := readyPods(t, systemNamespace, managerPods, 2, 2*time.Minute)
	var old *corev1.Pod
	g.Eventually(func() string { return leader(t) }).WithTimeout(2 * app.LeaseDuration).ShouldNot(BeEmpty())
	holder := leader(t)
	for i := range pods {
		if pods[i].Name == holder {
			old = &pods[i]
		}
	}
	g.Expect(old).NotTo(BeNil(), "the lease holder %q is not one of the manager Pods", holder)

	ns := "e2e-failover"
	newNamespace(t, ns)
	owner := asAlice(t)
	newKey(t, owner, ns, "before", time.Minute)

	// A crash, not a shutdown: SIGKILL, then the Pod goes at once (its
	// replacement has another name, so it cannot claim the old lease).
	ctr(t, "tasks", "kill", "--signal", "SIGKILL", containerID(t, old))
	g.Expect(admin.Delete(context.Background(), old, client.GracePeriodSeconds(0))).To(Succeed())
	killed := time.Now()
	newKey(t, owner, ns, "after", app.LeaseDuration+2*app.RetryPeriod+15*time.Second)
	took := time.Since(killed)
	next := leader(t)
	g.Expect(next).NotTo(Or(BeEmpty(), Equal(holder)))
	t.Logf("leader %s killed; %s issued the next key %s later (lease %s)", holder, next, took.Round(100*time.Millisecond), app.LeaseDuration)
	// The Deployment is whole again: two Ready managers.
	readyPods(t, systemNamespace, managerPods, 2, 2*time.Minute)
}

// TestTheManagerRunsWithTheChartsRBAC: keymint runs as the chart's
// ServiceAccount and nothing more: no binding gives it a role the chart
// does not ship (but the two every aggregated API holds), and the API
// server denies it what a cluster-admin has.
// (Every other test shows that these permissions are enough.)
func TestTheManagerRunsWithTheChartsRBAC(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	pods := readyPods(t, systemNamespace, managerPods, 2, 2*time.Minute)
	sa := pods[0].Spec.ServiceAccountName
	g.Expect(sa).To(Equal("keymint-manager"))
	isSA := func(subjects []rbacv1.Subject) bool {
		for _, s := range subjects {
			if s.Kind == rbacv1.ServiceAccountKind && s.Namespace == systemNamespace && s.Name == sa {
				return true
			}
		}
		return false
	}
	// A role given to every ServiceAccount, other than Kubernetes' own.
	allSAs := func(b string, ref rbacv1.RoleRef, subjects []rbacv1.Subject) {
		for _, s := range subjects {
			if s.Kind == rbacv1.GroupKind && strings.HasPrefix(s.Name, "system:serviceaccounts") && !strings.HasPrefix(ref.Name, "system:") {
				t.Errorf("%s gives group %s role %s", b, s.Name, ref.Name)
			}
		}
	}
	var crbs rbacv1.ClusterRoleBindingList
	g.Expect(admin.List(ctx, &crbs)).To(Succeed())
	for _, b := range crbs.Items {
		allSAs("ClusterRoleBinding "+b.Name, b.RoleRef, b.Subjects)
		// Besides its own roles, what every aggregated API holds:
		// delegated authentication and authorization.
		if isSA(b.Subjects) && b.RoleRef.Name != "system:auth-delegator" {
			g.Expect(b.RoleRef.Name).To(HavePrefix("keymint-"), "ClusterRoleBinding %s", b.Name)
		}
	}
	var rbs rbacv1.RoleBindingList
	g.Expect(admin.List(ctx, &rbs)).To(Succeed())
	for _, b := range rbs.Items {
		allSAs("RoleBinding "+b.Namespace+"/"+b.Name, b.RoleRef, b.Subjects)
		// and reading the front proxy's CA.
		if isSA(b.Subjects) && (b.Namespace != "kube-system" || b.RoleRef.Name != "extension-apiserver-authentication-reader") {
			g.Expect(b.RoleRef.Name).To(HavePrefix("keymint-"), "RoleBinding %s/%s", b.Namespace, b.Name)
		}
	}
	user := "system:serviceaccount:" + systemNamespace + ":" + sa
	for _, attrs := range []authorizationv1.ResourceAttributes{
		{Verb: "*", Group: "*", Resource: "*"},
		{Verb: "impersonate", Resource: "users"},
		{Verb: "escalate", Group: rbacv1.GroupName, Resource: "clusterroles"},
		{Verb: "create", Resource: "pods", Namespace: systemNamespace},
	} {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: user, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + systemNamespace, "system:authenticated"},
			ResourceAttributes: &attrs,
		}}
		g.Expect(admin.Create(ctx, sar)).To(Succeed())
		g.Expect(sar.Status.Allowed).To(BeFalse(), "the manager may %s %s", attrs.Verb, attrs.Resource)
	}
	// Its Pods hold no more than that: the token of that ServiceAccount,
	// a non-root user, no privilege escalation.
	for _, p := range pods {
		c := p.Spec.Containers[0]
		g.Expect(p.Spec.SecurityContext.RunAsNonRoot).To(HaveValue(BeTrue()))
		g.Expect(c.SecurityContext.AllowPrivilegeEscalation).To(HaveValue(BeFalse()))
		g.Expect(c.LivenessProbe).NotTo(BeNil())
		g.Expect(c.ReadinessProbe).NotTo(BeNil())
	}
}

// TestTheKubeletsProbesTakeAStoppedManagerOut: the manager that does not
// lead is stopped (SIGSTOP: it holds its sockets open and answers nothing).
// The kubelet's readiness probe (/readyz) takes it out of keymint-verify's
// endpoints, and the gateway keeps accepting keys through the other
// manager; its liveness probe (/healthz) then has the container restarted,
// and the Pod is Ready again.
func TestTheKubeletsProbesTakeAStoppedManagerOut(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	pods := readyPods(t, systemNamespace, managerPods, 2, 2*time.Minute)
	g.Eventually(func() string { return leader(t) }).WithTimeout(2 * app.LeaseDuration).ShouldNot(BeEmpty())
	var stopped *corev1.Pod
	for i := range pods {
		if pods[i].Name != leader(t) {
			stopped = &pods[i]
		}
	}
	g.Expect(stopped).NotTo(BeNil())
	restarts := stopped.Status.ContainerStatuses[0].RestartCount

	ns := "e2e-probes"
	_, key, _ := aliceKey(t, ns, "alice-probes")
	url := "http://" + gateway(t, ns) + ":8080/"

	ctr(t, "tasks", "kill", "--signal", "SIGSTOP", containerID(t, stopped))
	since := time.Now()
	pod := &corev1.Pod{}
	g.Eventually(func() (bool, error) {
		err := admin.Get(ctx, client.ObjectKeyFromObject(stopped), pod)
		return podReady(pod), err
	}).WithTimeout(time.Minute).WithPolling(200*time.Millisecond).Should(BeFalse(), "the stopped manager stayed Ready")
	t.Logf("the stopped manager was not Ready %s after SIGSTOP", time.Since(since).Round(100*time.Millisecond))
	// kube-proxy follows the endpoints: every request goes to the other manager.
	g.Eventually(func() (int, error) {
		code, _, err := ask(url, key)
		return code, err
	}).WithTimeout(10 * time.Second).Should(Equal(http.StatusOK))
	for range 20 {
		code, _, err := ask(url, key)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(code).To(Equal(http.StatusOK))
	}

	g.Eventually(func() (int32, error) {
		err := admin.Get(ctx, client.ObjectKeyFromObject(stopped), pod)
		if err != nil || len(pod.Status.ContainerStatuses) == 0 {
			return 0, err
		}
		return pod.Status.ContainerStatuses[0].RestartCount, nil
	}).WithTimeout(2*time.Minute).WithPolling(time.Second).Should(BeNumerically(">", restarts), "the liveness probe never restarted the stopped manager")
	t.Logf("the kubelet restarted the stopped manager %s after SIGSTOP", time.Since(since).Round(time.Second))
	readyPods(t, systemNamespace, managerPods, 2, time.Minute)
}
