package mem_test

import (
	"testing"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/mem"
	"github.com/dataplane/dataplane/origin/origintest"
)

func TestConformance(t *testing.T) {
	origintest.Run(t, origintest.Harness{
		New: func(t *testing.T) origin.Store { return mem.New() },
		Corrupt: func(t *testing.T, s origin.Store, ns, key string) {
			s.(*mem.Store).CorruptForTest(ns, key)
		},
	})
}
