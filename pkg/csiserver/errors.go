package csiserver

import (
	"context"
	"errors"
	"net"
	"syscall"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/pvnfs/pvnfs/pkg/parameters"
	"github.com/pvnfs/pvnfs/pkg/volume"
)

// ToStatus maps an error to a gRPC status. Handlers return status errors for the
// outcomes CSI defines (InvalidArgument, NotFound, ...) and plain errors for failures
// underneath them; this is the one place those plain errors get their code:
//   - bad input (volume IDs, parameters, volume context) is InvalidArgument;
//   - a deadline or an overloaded or unreachable API server is retryable
//     (DeadlineExceeded / Unavailable), so the CO tries again;
//   - a write conflict is Aborted: a concurrent writer won, retrying converges;
//   - anything else is Internal.
func ToStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	msg := err.Error()
	switch {
	case errors.Is(err, volume.ErrInvalidID), errors.Is(err, volume.ErrInvalidName),
		errors.Is(err, volume.ErrInvalidContext), errors.Is(err, parameters.ErrInvalid):
		return status.Error(codes.InvalidArgument, msg)
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, msg)
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, msg)
	case apierrors.IsConflict(err), apierrors.IsAlreadyExists(err):
		return status.Error(codes.Aborted, msg)
	case apierrors.IsTimeout(err), apierrors.IsServerTimeout(err), apierrors.IsTooManyRequests(err),
		apierrors.IsServiceUnavailable(err), apierrors.IsInternalError(err), isConnectionError(err):
		return status.Error(codes.Unavailable, msg)
	case apierrors.IsForbidden(err), apierrors.IsUnauthorized(err):
		return status.Error(codes.PermissionDenied, msg)
	}
	return status.Error(codes.Internal, msg)
}

// Retryable reports whether a status tells the CO to try again later rather than
// that the request failed.
func Retryable(err error) bool {
	switch status.Code(err) {
	case codes.DeadlineExceeded, codes.Unavailable, codes.Aborted, codes.Canceled:
		return true
	}
	return false
}

func isConnectionError(err error) bool {
	var netErr net.Error
	return errors.As(err, &netErr) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)
}
