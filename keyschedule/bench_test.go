package keyschedule

import (
	"testing"
)

func BenchmarkKeySchedule(b *testing.B) {
	b.Run("epoch", func(b *testing.B) {
		cs := testSuite
		init, _ := NewInitSecret(cs, testSecret(cs, 1))
		gc := (&GroupContext{Version: MLS10, CipherSuite: cs, GroupID: []byte("group"), Epoch: 9,
			TreeHash: testSecret(cs, 2), ConfirmedTranscriptHash: testSecret(cs, 3)}).Bytes()
		commit, psk := testSecret(cs, 4), testSecret(cs, 5)
		for b.Loop() {
			j := init.JoinerSecret(commit, gc)
			e := j.EpochSecret(psk, gc)
			s := e.Derive()
			next := s.NextInit()
			j.Erase()
			e.Erase()
			s.Erase()
			next.Erase()
		}
	})
}

func BenchmarkSecretTree(b *testing.B) {
	cs := testSuite
	root := testSecret(cs, 7)
	b.Run("ratchet-1000", func(b *testing.B) {
		for b.Loop() {
			tree, err := NewSecretTree(cs, root, 2, nil)
			if err != nil {
				b.Fatal(err)
			}
			for range 1000 {
				k, err := tree.NextKey(1, Application)
				if err != nil {
					b.Fatal(err)
				}
				k.Erase()
			}
		}
	})
	b.Run("out-of-order", func(b *testing.B) {
		// Each iteration fetches one key of a skipped generation; the
		// skips that create them are made with the timer stopped.
		const window = 64
		tree, err := NewSecretTree(cs, root, 2, &Config{OutOfOrderTolerance: window})
		if err != nil {
			b.Fatal(err)
		}
		r, _ := tree.ratchet(1, Application)
		next := uint32(0)
		for b.Loop() {
			if len(r.skipped) == 0 {
				b.StopTimer()
				k, err := tree.Key(1, Application, r.generation+window)
				if err != nil {
					b.Fatal(err)
				}
				k.Erase()
				next = r.skipped[0].Generation
				b.StartTimer()
			}
			k, err := tree.Key(1, Application, next)
			if err != nil {
				b.Fatal(err)
			}
			k.Erase()
			next++
		}
	})
}
