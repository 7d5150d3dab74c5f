package consortia

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// NewSet builds the engine of every consortium in cfgs, each as New
// builds one, so that consortiums may refer to each other: a cascade's
// tier that names a consortium runs that consortium's engine. callers
// maps provider names to their clients, as for New.
//
// A consortium is built after the consortiums its tiers name. Tiers that
// lead back to a consortium (a cycle) are refused, with an error naming
// the cycle; so are a tier that names neither a consortium nor a
// provider/model ref, and whatever New refuses. Errors name the first
// consortium in name order that has one.
func NewSet(cfgs map[string]Config, callers map[string]Caller) (map[string]*Engine, error) {
	engines := make(map[string]*Engine, len(cfgs))
	lookup := func(name string) (*Engine, bool) {
		e, ok := engines[name]
		return e, ok
	}
	building := map[string]bool{}
	var path []string // the consortiums being built, each naming the next
	var build func(name string) error
	build = func(name string) error {
		if engines[name] != nil {
			return nil
		}
		if building[name] {
			cycle := append(slices.Clone(path[slices.Index(path, name):]), name)
			return fmt.Errorf("consortium %s: cascade tiers form a cycle: %s", name, strings.Join(cycle, " -> "))
		}
		building[name] = true
		path = append(path, name)
		cfg := cfgs[name]
		for _, tier := range tiersOf(cfg) {
			if _, ok := cfgs[tier]; ok {
				if err := build(tier); err != nil {
					return err
				}
			}
		}
		path = path[:len(path)-1]
		e, err := newEngine(name, cfg, callers, lookup)
		if err != nil {
			return err
		}
		engines[name] = e
		return nil
	}
	for _, name := range slices.Sorted(maps.Keys(cfgs)) {
		if err := build(name); err != nil {
			return nil, err
		}
	}
	return engines, nil
}

// tiersOf returns the tiers of a cascade; other strategies have none.
func tiersOf(cfg Config) []string {
	if cfg.Strategy != "cascade" {
		return nil
	}
	return cfg.Cascade.Tiers
}
