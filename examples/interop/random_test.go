package main

import (
	"fmt"
	"math/rand/v2"
	"slices"
)

// deepRandom writes a scenario like the harness's deep_random config: a
// group grows by batches of adds while random members send Updates and
// random committers commit them by reference, together with adds and
// removes by value. The same seed gives the same scenario.
func deepRandom(seed uint64, rounds int) []step {
	r := rand.New(rand.NewPCG(seed, 0))
	steps := []step{create("actor0")}
	members := []string{"actor0"}
	nextActor := 1
	pick := func(from []string, not ...string) string {
		var c []string
		for _, m := range from {
			if !slices.Contains(not, m) {
				c = append(c, m)
			}
		}
		if len(c) == 0 {
			return ""
		}
		return c[r.IntN(len(c))]
	}
	for round := range rounds {
		committer := pick(members)
		var updaters []string
		var byRef []int
		if round > 0 {
			for range r.IntN(3) {
				u := pick(members, append(slices.Clone(updaters), committer)...)
				if u == "" || slices.Contains(updaters, u) {
					continue
				}
				updaters = append(updaters, u)
				byRef = append(byRef, len(steps))
				steps = append(steps, updateProposal(u))
			}
		}
		var removed []string
		if len(members) > 4 {
			for range r.IntN(3) {
				if v := pick(members, append(append(slices.Clone(updaters), removed...), committer)...); v != "" {
					removed = append(removed, v)
				}
			}
		}
		var joiners []string
		var byValue []desc
		for range 1 + r.IntN(3) {
			name := fmt.Sprintf("actor%d", nextActor)
			nextActor++
			byValue = append(byValue, addValue(len(steps)))
			steps = append(steps, newKeyPackage(name))
			joiners = append(joiners, name)
		}
		for _, v := range removed {
			byValue = append(byValue, removeValue(v))
		}
		var others []string
		for _, m := range members {
			if m != committer && !slices.Contains(removed, m) {
				others = append(others, m)
			}
		}
		steps = append(steps, commit(committer, byRef, others, joiners).withValues(byValue...))
		members = append(append([]string{committer}, others...), joiners...)
	}
	return steps
}

func init() {
	scenarios["deep_random"] = map[string][]step{"random": deepRandom(9420, 4)}
}
