package server

// SetInflightBudget lowers the bounds of large responses in flight, for
// tests.
func SetInflightBudget(s *Server, large, budget int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.largeResponse, s.inflightBudget = large, budget
}

// OpenWatches counts a node's open route configuration and load
// assignment watches, for tests that must wait for a request to arrive.
func OpenWatches(s *Server, node string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.watches[node])
}

// SetSyncSlots sets how many nodes may sync at once, for tests; call it
// before any stream opens.
func SetSyncSlots(s *Server, n int) { s.syncing = make(chan struct{}, n) }

// StageComputations counts the O(config) computations of what nodes are
// sent next (misses of the stage memo), for tests.
func StageComputations(s *Server) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.memo.computed
}

// FullScans counts the watches that looked at every resource of their
// type (they had no base), for tests.
func FullScans(s *Server) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.memo.scans
}
