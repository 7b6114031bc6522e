package dataplane_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/dataplane/dataplane"
	"github.com/dataplane/dataplane/gossip"
	"github.com/dataplane/dataplane/origin/dir"
	"github.com/dataplane/dataplane/publisher"
)

// Example embeds a node in a program: open it over an origin, read from
// memory, and watch a namespace for changes. This is the snippet the README
// shows.
func Example() {
	ctx := context.Background()
	root, _ := os.MkdirTemp("", "dataplane-example-")
	defer os.RemoveAll(root)

	store, err := dir.Open(root) // or s3, dynamodb, a cache tier: see origin/originurl
	if err != nil {
		log.Fatal(err)
	}
	g := gossip.DefaultLocalConfig() // DefaultLANConfig / DefaultWANConfig in production
	g.Name, g.Logger = "example-1", quiet()
	g.Insecure = true // loopback example; give g.SecretKeys in production
	node, err := dataplane.Open(ctx, dataplane.Config{Origin: store, Gossip: &g.Cluster, Logger: quiet()})
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close()
	changes, stop := node.Watch("routes")
	defer stop()

	// A control plane writes through a publisher, which hands the change to
	// a gossip node; every node of the cluster applies it within a second.
	pcfg := publisher.DefaultConfig()
	pcfg.Notifier, pcfg.Logger = node, quiet()
	pub, _ := publisher.New(store, pcfg)
	if _, err := pub.Put(ctx, "routes", "api.example.com", []byte(`{"upstreams":["http://10.0.0.7:8080"]}`)); err != nil {
		log.Fatal(err)
	}

	c := <-changes
	v, err := node.Get(ctx, "routes", "api.example.com")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(c.Key, c.Version == v.Version, string(v.Data))
	// Output: api.example.com true {"upstreams":["http://10.0.0.7:8080"]}
}
