package client

import (
	"context"
	"time"
)

// SetSleep replaces c's wait between attempts, for tests.
func SetSleep(c *Client, f func(ctx context.Context, d time.Duration) error) { c.sleep = f }
