package mounter

import (
	"testing"

	"github.com/pvnfs/pvnfs/pkg/mounter/mounttest"
)

func TestMain(m *testing.M) { mounttest.Main(m) }
