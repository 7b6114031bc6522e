package gossip

import (
	"math/rand/v2"

	"github.com/dataplane/dataplane/internal/tick"
)

// reconnectLoop retries the seeds while the node is alone, and a random lost
// member each ReconnectInterval, so that a healed partition rejoins even
// after memberlist stopped gossiping to the dead.
func (n *Node) reconnectLoop() {
	defer n.wg.Done()
	tick.Every(n.stop, n.cfg.tune.ReconnectInterval, n.reconnect)
}

func (n *Node) reconnect() {
	ml := n.ml.Load()
	if n.numAlive.Load() <= 1 && len(n.cfg.Seeds) > 0 {
		n.tryJoin(n.cfg.Seeds)
		return
	}
	now := n.cfg.Now()
	var addrs []string
	n.membersMu.Lock()
	for name, l := range n.lost {
		if now.Sub(l.since) > n.cfg.tune.ReconnectTimeout {
			delete(n.lost, name)
			continue
		}
		addrs = append(addrs, l.addr)
	}
	n.updateMembersLocked()
	n.membersMu.Unlock()
	if len(addrs) == 0 || ml == nil {
		return
	}
	n.tryJoin([]string{addrs[rand.IntN(len(addrs))]})
}

func (n *Node) tryJoin(addrs []string) {
	select {
	case <-n.stop:
		return
	default:
	}
	if _, err := n.ml.Load().Join(addrs); err != nil {
		n.m.reconnect.WithLabelValues("error").Inc()
		n.logger.Debug("gossip reconnect failed", "addrs", addrs, "err", err)
		return
	}
	n.m.reconnect.WithLabelValues("ok").Inc()
}
