package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http/httptest"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane/origin/dir"
	"github.com/dataplane/dataplane/publisher"
	"github.com/dataplane/dataplane/publisher/client"
)

func Example() {
	// A publisher API to talk to: `dataplane publish serve` in production.
	root, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(root)
	store, _ := dir.Open(root)
	cfg := publisher.DefaultConfig()
	cfg.Registerer = prometheus.NewRegistry()
	p, _ := publisher.New(store, cfg)
	srv := httptest.NewServer(publisher.Handler(p, "s3cret"))
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := client.New(srv.URL, client.DefaultConfig().WithToken("s3cret"))
	if err != nil {
		log.Fatal(err)
	}
	w, err := c.Put(ctx, "routes", "api.example.com", []byte(`{"upstreams":["http://10.0.0.1:8080"]}`))
	if err != nil {
		log.Fatal(err)
	}
	rec, err := c.Get(ctx, "routes", "api.example.com")
	fmt.Println(string(rec.Value), rec.Version == w.Version, err)

	// The server's field errors, typed.
	_, err = c.Put(ctx, "routes", "api.example.com", []byte(`{"upstreams":["http://10.0.0.1:8080"],"keyspaces":"x"}`))
	var apiErr *client.APIError
	if errors.As(err, &apiErr) {
		fmt.Println(apiErr.Status, apiErr.Code, apiErr.Fields[0].In, apiErr.Fields[0].Field, errors.Is(err, client.ErrInvalid))
	}
	// Output:
	// {"upstreams":["http://10.0.0.1:8080"]} true <nil>
	// 400 invalid value keyspaces true
}
