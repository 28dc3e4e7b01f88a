package treemath

import (
	"testing"

	"github.com/microchat/e2ee/internal/vectortest"
)

type treeMathVector struct {
	NLeaves uint32    `json:"n_leaves"`
	NNodes  uint32    `json:"n_nodes"`
	Root    NodeIndex `json:"root"`
	Left    []*uint32 `json:"left"`
	Right   []*uint32 `json:"right"`
	Parent  []*uint32 `json:"parent"`
	Sibling []*uint32 `json:"sibling"`
}

func TestVectors(t *testing.T) {
	vectortest.Run(t, "tree-math", testTreeMath)
}

// TestGeneratedVectors checks the vectors of ../../testdata/vectors, which
// package testvectors generates, with the same checks.
func TestGeneratedVectors(t *testing.T) {
	vectortest.RunGenerated(t, "tree-math", testTreeMath)
}

func testTreeMath(t *testing.T, v *treeMathVector) {
	if w := NodeWidth(v.NLeaves); w != v.NNodes {
		t.Fatalf("NodeWidth(%d) = %d, want %d", v.NLeaves, w, v.NNodes)
	}
	if r := Root(v.NLeaves); r != v.Root {
		t.Fatalf("Root(%d) = %d, want %d", v.NLeaves, r, v.Root)
	}
	for _, list := range [][]*uint32{v.Left, v.Right, v.Parent, v.Sibling} {
		if uint32(len(list)) != v.NNodes {
			t.Fatalf("vector lists %d nodes, want %d", len(list), v.NNodes)
		}
	}
	check := func(name string, x NodeIndex, got NodeIndex, ok bool, want *uint32) {
		t.Helper()
		switch {
		case want == nil && ok:
			t.Errorf("%s(%d) = %d, want none", name, x, got)
		case want != nil && !ok:
			t.Errorf("%s(%d) = none, want %d", name, x, *want)
		case want != nil && got != NodeIndex(*want):
			t.Errorf("%s(%d) = %d, want %d", name, x, got, *want)
		}
	}
	for i := range v.NNodes {
		x := NodeIndex(i)
		check("Left", x, Left(x), !x.IsLeaf(), v.Left[i])
		check("Right", x, Right(x, v.NLeaves), !x.IsLeaf(), v.Right[i])
		check("Parent", x, Parent(x, v.NLeaves), x != v.Root, v.Parent[i])
		check("Sibling", x, Sibling(x, v.NLeaves), x != v.Root, v.Sibling[i])
	}
}

// TestPaths checks direct paths and copaths against their definitions for
// every node of trees of many sizes, including non-powers of two.
func TestPaths(t *testing.T) {
	for n := uint32(1); n <= 70; n++ {
		root := Root(n)
		for x := NodeIndex(0); uint32(x) < NodeWidth(n); x++ {
			dp := DirectPath(x, n)
			cp := Copath(x, n)
			if len(dp) != len(cp) {
				t.Fatalf("n=%d x=%d: direct path %v and copath %v differ in length", n, x, dp, cp)
			}
			if x == root {
				if len(dp) != 0 {
					t.Fatalf("n=%d: root has direct path %v", n, dp)
				}
				continue
			}
			if dp[len(dp)-1] != root {
				t.Fatalf("n=%d x=%d: direct path %v does not end at root %d", n, x, dp, root)
			}
			prev := x
			for j, p := range dp {
				if Parent(prev, n) != p {
					t.Fatalf("n=%d x=%d: direct path %v step %d", n, x, dp, j)
				}
				if !IsAncestor(p, x) {
					t.Fatalf("n=%d: IsAncestor(%d, %d) = false", n, p, x)
				}
				if Sibling(prev, n) != cp[j] {
					t.Fatalf("n=%d x=%d: copath %v step %d", n, x, cp, j)
				}
				if IsAncestor(cp[j], x) || IsAncestor(x, cp[j]) {
					t.Fatalf("n=%d: copath node %d related to %d", n, cp[j], x)
				}
				if l, r := Left(p), Right(p, n); l != prev && r != prev {
					t.Fatalf("n=%d: %d is not a child of %d (children %d, %d)", n, prev, p, l, r)
				}
				prev = p
			}
		}
	}
}

func TestLevelAndLog2(t *testing.T) {
	for _, tc := range []struct{ x, level uint32 }{{0, 0}, {1, 1}, {3, 2}, {5, 1}, {7, 3}, {11, 2}, {15, 4}} {
		if got := Level(NodeIndex(tc.x)); got != tc.level {
			t.Errorf("Level(%d) = %d, want %d", tc.x, got, tc.level)
		}
	}
	for _, tc := range []struct{ x, log uint32 }{{0, 0}, {1, 0}, {2, 1}, {3, 1}, {4, 2}, {1 << 31, 31}} {
		if got := Log2(tc.x); got != tc.log {
			t.Errorf("Log2(%d) = %d, want %d", tc.x, got, tc.log)
		}
	}
	if LeafIndex(5).Node() != 10 || NodeIndex(10).Leaf() != 5 {
		t.Error("leaf/node index conversion")
	}
	// 2*l must not wrap: leaf 2^31+2 is not leaf 2.
	if MaxLeaf.Node() != 1<<32-2 || LeafIndex(1<<31+2).Node() != InvalidNode || LeafIndex(1<<32-1).Node() != InvalidNode {
		t.Error("leaf index above MaxLeaf wraps")
	}
}

func BenchmarkDirectPath(b *testing.B) {
	const n = 1 << 14
	for b.Loop() {
		_ = DirectPath(NodeIndex(2*1234), n)
	}
}
