package consortia_test

import (
	"strings"
	"testing"

	"github.com/consortium-dev/consortium/consortia"
	"github.com/consortium-dev/consortium/upstream"
)

// cascadeOf is the Config of a cascade of tiers.
func cascadeOf(tiers ...string) consortia.Config {
	return consortia.Config{Strategy: "cascade", Cascade: consortia.Cascade{Tiers: tiers, EscalateBelow: 0.8}}
}

func TestNewSet(t *testing.T) {
	p, err := upstream.New(upstream.Config{Name: "fake", Type: "openai", BaseURL: "http://fake.invalid/v1"})
	if err != nil {
		t.Fatal(err)
	}
	callers := map[string]consortia.Caller{"fake": p}
	quick := consortiumConfig(t, quickBody)
	tests := []struct {
		name string
		cfgs map[string]consortia.Config
		err  string // "" when the set builds
	}{
		{name: "tiers of consortiums and a model", cfgs: map[string]consortia.Config{
			"quick": quick, "mid": cascadeOf("quick", "fake/big"), "top": cascadeOf("mid", "quick", "fake/big")}},
		{name: "a cascade naming itself", cfgs: map[string]consortia.Config{"a": cascadeOf("quick", "a"), "quick": quick},
			err: "consortium a: cascade tiers form a cycle: a -> a"},
		{name: "a cycle of three", cfgs: map[string]consortia.Config{
			"a": cascadeOf("b"), "b": cascadeOf("quick", "c"), "c": cascadeOf("a"), "quick": quick},
			err: "consortium a: cascade tiers form a cycle: a -> b -> c -> a"},
		{name: "an unknown tier", cfgs: map[string]consortia.Config{"a": cascadeOf("quick", "slow"), "quick": quick},
			err: `consortium a: tier "slow" names no consortium`},
		{name: "a model before the last tier", cfgs: map[string]consortia.Config{"a": cascadeOf("fake/big", "quick"), "quick": quick},
			err: `consortium a: tier "fake/big" is a provider/model, which has no confidence`},
		{name: "a model of no provider", cfgs: map[string]consortia.Config{"a": cascadeOf("quick", "other/big"), "quick": quick},
			err: `"other/big" names no configured provider`},
		{name: "a cascade with members", cfgs: map[string]consortia.Config{"a": func() consortia.Config {
			c := cascadeOf("quick")
			c.Members = quick.Members
			return c
		}(), "quick": quick},
			err: "the strategy cascade has no members"},
		{name: "a cascade without tiers", cfgs: map[string]consortia.Config{"a": cascadeOf()},
			err: "the strategy cascade needs tiers"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			engines, err := consortia.NewSet(tc.cfgs, callers)
			if tc.err == "" {
				if err != nil || len(engines) != len(tc.cfgs) {
					t.Fatalf("engines %v, error %v", engines, err)
				}
				for name, e := range engines {
					if e.Name() != name {
						t.Errorf("engine %q is named %q", name, e.Name())
					}
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error %v, want one containing %q", err, tc.err)
			}
		})
	}
}

// TestNewRefusesConsortiumTiers: New builds one engine, which cannot reach
// other consortiums; a cascade naming one needs NewSet.
func TestNewRefusesConsortiumTiers(t *testing.T) {
	_, err := consortia.New("a", cascadeOf("quick"), nil)
	if err == nil || !strings.Contains(err.Error(), "NewSet") {
		t.Fatalf("error %v, want one pointing to NewSet", err)
	}
}
