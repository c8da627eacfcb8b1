package csiserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/pvnfs/pvnfs/pkg/parameters"
	"github.com/pvnfs/pvnfs/pkg/volume"
)

func TestToStatus(t *testing.T) {
	gr := schema.GroupResource{Resource: "services"}
	tests := []struct {
		name string
		err  error
		want codes.Code
	}{
		{name: "status passes through", err: status.Error(codes.NotFound, "x"), want: codes.NotFound},
		{name: "bad volume ID", err: fmt.Errorf("wrap: %w", volume.ErrInvalidID), want: codes.InvalidArgument},
		{name: "bad context", err: volume.ErrInvalidContext, want: codes.InvalidArgument},
		{name: "bad parameter", err: &parameters.Error{Key: "k"}, want: codes.InvalidArgument},
		{name: "deadline", err: fmt.Errorf("waiting: %w", context.DeadlineExceeded), want: codes.DeadlineExceeded},
		{name: "canceled", err: context.Canceled, want: codes.Canceled},
		{name: "conflict", err: apierrors.NewConflict(gr, "a", errors.New("changed")), want: codes.Aborted},
		{name: "already exists", err: apierrors.NewAlreadyExists(gr, "a"), want: codes.Aborted},
		{name: "API timeout", err: apierrors.NewTimeoutError("slow", 1), want: codes.Unavailable},
		{name: "API throttled", err: apierrors.NewTooManyRequests("busy", 1), want: codes.Unavailable},
		{name: "API unavailable", err: apierrors.NewServiceUnavailable("down"), want: codes.Unavailable},
		{name: "connection refused", err: &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, want: codes.Unavailable},
		{name: "forbidden", err: apierrors.NewForbidden(gr, "a", errors.New("rbac")), want: codes.PermissionDenied},
		{name: "anything else", err: errors.New("boom"), want: codes.Internal},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := ToStatus(tc.err)
			if status.Code(got) != tc.want {
				t.Errorf("ToStatus(%v) = %v, want %v", tc.err, status.Code(got), tc.want)
			}
		})
	}
	if ToStatus(nil) != nil {
		t.Error("ToStatus(nil) != nil")
	}
}

func TestSocketPath(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"unix:///csi/csi.sock", "/csi/csi.sock", true},
		{"unix:/csi/csi.sock", "/csi/csi.sock", true},
		{"/csi/csi.sock", "/csi/csi.sock", true},
		{"tcp://127.0.0.1:10000", "", false},
		{"unix://host/csi.sock", "", false},
		{"csi.sock", "", false},
	}
	for _, tc := range tests {
		got, err := SocketPath(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("SocketPath(%q) = %q, %v", tc.in, got, err)
		}
	}
}
