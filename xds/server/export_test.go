package server

// SetInflightBudget lowers the bounds of large responses in flight, for
// tests.
func SetInflightBudget(s *Server, large, budget int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.largeResponse, s.inflightBudget = large, budget
}
