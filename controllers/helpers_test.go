package controllers_test

import (
	"context"
	"errors"
	"sync/atomic"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
)

// interceptorFuncs injects failures into a manager's writes.
type interceptorFuncs struct {
	failStatusWrites bool
	failed           atomic.Int64
}

func (f *interceptorFuncs) funcs() *interceptor.Funcs {
	return &interceptor.Funcs{
		SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
			if f.failStatusWrites && sub == "status" {
				f.failed.Add(1)
				return errors.New("injected: the manager stopped before writing status")
			}
			return c.SubResource(sub).Patch(ctx, obj, patch, opts...)
		},
	}
}

func (f *interceptorFuncs) failures() int64 { return f.failed.Load() }
