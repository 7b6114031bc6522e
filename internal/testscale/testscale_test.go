package testscale

import (
	"testing"
	"time"
)

func TestEnvFixesFactor(t *testing.T) {
	t.Setenv(Env, "3")
	if got := Duration(time.Second); got != 3*time.Second {
		t.Fatalf("Duration(1s) with %s=3: %s", Env, got)
	}
	t.Setenv(Env, "0.5") // below 1: ignored, the load decides
	if f := Factor(); f < 1 || f > MaxFactor {
		t.Fatalf("Factor() = %v, want within [1, %d]", f, MaxFactor)
	}
}

func TestLoadFactorBounded(t *testing.T) {
	t.Setenv(Env, "")
	if f := Factor(); f < 1 || f > MaxFactor {
		t.Fatalf("Factor() = %v, want within [1, %d]", f, MaxFactor)
	}
}
