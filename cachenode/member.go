package cachenode

import (
	"fmt"
	"time"

	"github.com/dataplane/dataplane/follow"
	"github.com/dataplane/dataplane/gossip"
)

// joinCluster starts, when cfg.Gossip is set, the node's follower of the
// origin's change log and its gossip member, both feeding the cache (the
// Server is their Target and Applier), from the settings stated once on
// Config: Timing (LogInterval, LogSettle, MaxFutureSkew()), Verifier,
// Registerer and Logger (and the clock tests set).
func (s *Server) joinCluster() error {
	cfg := s.cfg
	if cfg.Gossip == nil {
		return nil
	}
	fc := follow.Config{
		Interval: cfg.Timing.LogInterval, Settle: cfg.Timing.LogSettle, Batch: followBatch,
		Now: cfg.now, Logger: cfg.Logger, Registerer: cfg.Registerer,
	}
	g := gossip.Config{
		Cluster: *cfg.Gossip, MaxFutureSkew: cfg.Timing.MaxFutureSkew(),
		Now: cfg.now, Logger: cfg.Logger, Registerer: cfg.Registerer,
	}
	if cfg.Verifier != nil {
		fc.Verifier, g.Verifier = cfg.Verifier, cfg.Verifier
		// Checkpoints pushed by the publisher reach the node's readers
		// before its next origin read finds them.
		g.OnCheckpoint = s.OfferCheckpoint
	}
	fl, err := follow.New(fc, s, cfg.Origin)
	if err != nil {
		return fmt.Errorf("cachenode: %w", err)
	}
	gn, err := gossip.New(g, s, fl)
	if err != nil {
		_ = fl.Close()
		return fmt.Errorf("cachenode: %w", err)
	}
	s.follower, s.gossip = fl, gn
	return nil
}

// followBatch is the most changes the follower asks of the log in one read.
const followBatch = 1000

// leaveCluster leaves the gossip cluster (telling the others, within 2 s)
// and stops following the log.
func (s *Server) leaveCluster() {
	if s.gossip != nil {
		_ = s.gossip.Leave(2 * time.Second)
		_ = s.gossip.Close()
	}
	if s.follower != nil {
		_ = s.follower.Close()
	}
}

// Members lists the gossip cluster's members as this node sees them; nil
// without Config.Gossip.
func (s *Server) Members() []gossip.Member {
	if s.gossip == nil {
		return nil
	}
	return s.gossip.Members()
}

// GossipAddr is the address other members join this node at; "" without
// Config.Gossip.
func (s *Server) GossipAddr() string {
	if s.gossip == nil {
		return ""
	}
	return s.gossip.Addr()
}
