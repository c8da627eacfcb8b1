package ganesha

import (
	"errors"

	"github.com/pvnfs/pvnfs/pkg/nfsserver/engine"
)

func asStepError(err error, target **engine.StepError) bool {
	return err != nil && errors.As(err, target)
}
