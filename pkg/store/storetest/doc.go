// Package storetest holds the conformance suite and benchmarks every
// store.Store implementation runs, so all stores honour the same contract:
//
//	func TestStore(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store { return newStore(t) })
//	}
//
//	func BenchmarkStore(b *testing.B) {
//		storetest.Bench(b, func(b *testing.B) store.Store { return newStore(b) })
//	}
package storetest
