package mls

import (
	"errors"
	"fmt"

	"github.com/microchat/e2ee/treekem"
)

// ErrLimit is matched by the error for a message that exceeds one of the
// [Limits]: a count RFC 9420 leaves open, bounded so that a hostile
// message costs work and memory in proportion to its size.
var ErrLimit = errors.New("mls: limit exceeded")

// Limits bounds counts that RFC 9420 leaves open. A zero field selects its
// default, which real groups never reach; a negative one removes the
// bound. Exceeding a limit is an error matching [ErrLimit] and
// [ValidationError].
type Limits struct {
	// MaxProposalsPerCommit bounds the proposals of a commit, by value
	// and by reference (RFC 9420, §12.4). Default
	// DefaultMaxProposalsPerCommit.
	MaxProposalsPerCommit int
	// MaxPSKsPerCommit bounds the PreSharedKey proposals of a commit
	// (RFC 9420, §8.4). Default DefaultMaxPSKsPerCommit.
	MaxPSKsPerCommit int
}

// Defaults of [Limits].
const (
	// DefaultMaxProposalsPerCommit admits a commit adding 100,000 members.
	DefaultMaxProposalsPerCommit = 100_000
	// DefaultMaxPSKsPerCommit is far above the handful of PSKs real
	// commits inject.
	DefaultMaxPSKsPerCommit = 1_000
)

func limit(v, def int) int {
	switch {
	case v < 0:
		return int(^uint(0) >> 1)
	case v == 0:
		return def
	}
	return v
}

func (l *Limits) maxProposals() int {
	return limit(l.MaxProposalsPerCommit, DefaultMaxProposalsPerCommit)
}
func (l *Limits) maxPSKs() int { return limit(l.MaxPSKsPerCommit, DefaultMaxPSKsPerCommit) }

func limitError(section, what string, max int) error {
	return &ValidationError{Section: section, Err: fmt.Errorf("%w: more than %d %s", ErrLimit, max, what)}
}

// checkCustomProposalsSupport checks, as checkCustomProposalSupport does
// for one type, that every member of tree but those in skip supports each
// of types (distinct), in one pass over the members: O(members' listed
// proposal types + types), not their product.
func checkCustomProposalsSupport(types []ProposalType, tree *treekem.Tree, skip map[LeafIndex]bool) error {
	if len(types) == 1 {
		return checkCustomProposalSupport(types[0], tree, skip)
	}
	// count[t] is the number of members listing t; last[t] the last
	// member counted, so that a type listed twice counts once.
	type entry struct {
		count int
		last  LeafIndex
	}
	seen := make(map[ProposalType]*entry, len(types))
	for _, t := range types {
		seen[t] = &entry{last: ^LeafIndex(0)}
	}
	members := 0
	for i, l := range tree.Leaves() {
		if skip[i] {
			continue
		}
		members++
		for _, t := range l.Capabilities.Proposals {
			if e := seen[t]; e != nil && e.last != i {
				e.count++
				e.last = i
			}
		}
	}
	for _, t := range types {
		if seen[t].count < members {
			return checkCustomProposalSupport(t, tree, skip)
		}
	}
	return nil
}
